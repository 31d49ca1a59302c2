"""Batched image transforms for RAD: one tensor op per batch, randomness from a ``torch.Generator``.

Every function takes ``x`` ``[M, H, W]`` float in [0, 1] (one grey image per row) and returns a new
``[M, H, W]`` tensor; random parameters are drawn per image from ``g``. Each mirrors the
torchvision operation it names (same parameter laws and the same geometry), so a fixed parameter
gives torchvision's result up to float rounding, but all ``M`` images go through together.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PIPELINES = (
    "identity",
    "perspective-0.5",
    "perspective-0.9",
    "erase",
    "noise",
    "erase+perspective-0.5",
    "blur",
    "sharpness",
)
"""The eight transform pipelines of method.md §4, in the order their indices refer to."""

ERASE_SCALE = (0.10, 0.20)
ERASE_RATIO = (0.3, 3.3)
NOISE_STD = 0.01
BLUR_KERNEL = 15
BLUR_SIGMA = (0.1, 2.0)
SHARPNESS = 4.0


def _uniform(m: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(m, generator=g, dtype=torch.float64)


def perspective_endpoints(m: int, h: int, w: int, distortion: float, g: torch.Generator) -> torch.Tensor:
    """``[m, 4, 2]`` corner targets (x, y) drawn as ``RandomPerspective.make_params`` draws them.

    Corners in the order top-left, top-right, bottom-right, bottom-left; each moves inwards by up
    to ``distortion`` times half the side.
    """
    bh = int(distortion * (h // 2)) + 1
    bw = int(distortion * (w // 2)) + 1

    def draw(low: int, high: int) -> torch.Tensor:
        return torch.randint(low, high, (m,), generator=g)

    corners = [
        (draw(0, bw), draw(0, bh)),
        (draw(w - bw, w), draw(0, bh)),
        (draw(w - bw, w), draw(h - bh, h)),
        (draw(0, bw), draw(h - bh, h)),
    ]
    return torch.stack([torch.stack(c, dim=-1) for c in corners], dim=1).to(torch.float64)


def perspective_coefficients(
    startpoints: torch.Tensor, endpoints: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([m, 8] homographies, [m] bool singular)``: each maps an output pixel (``endpoints`` frame)
    to its input pixel.

    ``startpoints`` ``[4, 2]`` or ``[m, 4, 2]``, ``endpoints`` ``[m, 4, 2]`` (x, y). Solves the 8x8
    system of ``torchvision.transforms.functional._get_perspective_coeffs`` for all ``m`` at once;
    ``singular`` marks the systems with no solution (the homography would need its last coefficient
    0, not 1: the output's origin on its vanishing line), whose rows of the result are meaningless.
    """
    end = endpoints.to(torch.float64)
    start = startpoints.to(torch.float64).expand_as(end)
    px, py = end[..., 0], end[..., 1]
    sx, sy = start[..., 0], start[..., 1]
    one, zero = torch.ones_like(px), torch.zeros_like(px)
    row_x = torch.stack([px, py, one, zero, zero, zero, -sx * px, -sx * py], dim=-1)
    row_y = torch.stack([zero, zero, zero, px, py, one, -sy * px, -sy * py], dim=-1)
    a = torch.stack([row_x, row_y], dim=2).reshape(end.shape[0], 8, 8)
    b = start.reshape(end.shape[0], 8)
    solution, info = torch.linalg.solve_ex(a, b)
    return solution, info != 0


def warp_perspective(x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """``[M, H, W]`` images resampled (bilinear, zeros outside) through ``[M, 8]`` homographies.

    Output pixel centre ``(u, v)`` reads the input at ``((a u + b v + c) / q, (d u + e v + f) / q)``
    with ``q = g u + h v + 1``, as torchvision's ``_perspective_grid`` does.
    """
    m, h, w = x.shape
    c = torch.cat([coefficients.to(torch.float32), torch.ones(m, 1)], dim=1).view(m, 3, 3)
    # grid_sample wants [-1, 1]: grid = s * num / q - 1 = (s * num - q) / q, whose numerator is
    # again affine in (u, v); all three planes of all images come from one [3M, 3] @ [3, HW] product
    c[:, :2] = c[:, :2] * torch.tensor([2.0 / w, 2.0 / h]).view(1, 2, 1) - c[:, 2:3]
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    basis = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(h * w)])  # [3, H*W] pixel centres
    planes = (c.view(3 * m, 3) @ basis).view(m, 3, h * w)
    grid = (planes[:, :2] / planes[:, 2:3]).transpose(1, 2).reshape(m, h, w, 2)
    out = F.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.squeeze(1)


def random_perspective(x: torch.Tensor, distortion: float, g: torch.Generator) -> torch.Tensor:
    """``RandomPerspective(distortion_scale=distortion, p=1)`` on each image. Where the corners drawn
    for an image admit no homography of this form (:func:`perspective_coefficients`; torchvision's
    least-squares solve turns them into an arbitrary warp; about 1 in 7,000 draws on 16 x 16
    images), that image's corners are drawn again from ``g``; every other draw is unchanged, so
    the data of every seed that built before are the same."""
    m, h, w = x.shape
    start = torch.tensor([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=torch.float64)
    coefficients, singular = perspective_coefficients(start, perspective_endpoints(m, h, w, distortion, g))
    while singular.any():  # no homography with these corners (rare, small images): draw them again
        rows = singular.nonzero().squeeze(1)
        redrawn, again = perspective_coefficients(
            start, perspective_endpoints(len(rows), h, w, distortion, g)
        )
        coefficients[rows] = redrawn
        singular = torch.zeros_like(singular)
        singular[rows] = again
    return warp_perspective(x, coefficients)


def erase_boxes(m: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """``[m, 4]`` int64 boxes (top, left, height, width) covering 10-20% of the area.

    Area fraction uniform in :data:`ERASE_SCALE`, aspect ratio log-uniform in :data:`ERASE_RATIO`,
    sides rounded as ``RandomErasing`` rounds them (they always fit at these scales), position
    uniform over the places the box fits.
    """
    area = h * w * _uniform(m, *ERASE_SCALE, g)
    ratio = torch.exp(_uniform(m, math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]), g))
    bh = torch.sqrt(area * ratio).round().long().clamp(1, h)
    bw = torch.sqrt(area / ratio).round().long().clamp(1, w)
    top = (torch.rand(m, generator=g, dtype=torch.float64) * (h - bh + 1)).long()
    left = (torch.rand(m, generator=g, dtype=torch.float64) * (w - bw + 1)).long()
    return torch.stack([top, left, bh, bw], dim=1)


def erase(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``[M, H, W]`` images with ``[M, 4]`` boxes (top, left, height, width) set to 0."""
    m, h, w = x.shape
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    top, left, bh, bw = (boxes[:, i].view(m, 1, 1) for i in range(4))
    mask = (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)
    return x.masked_fill(mask, 0.0)


def random_erasing(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``RandomErasing(p=1, scale=(0.1, 0.2), value=0)`` on each image."""
    m, h, w = x.shape
    return erase(x, erase_boxes(m, h, w, g))


def gaussian_noise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``GaussianNoise(sigma=0.01, clip=True)``: add N(0, 0.01^2) per pixel, clip to [0, 1]."""
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype)
    return (x + NOISE_STD * noise).clamp_(0.0, 1.0)


def gaussian_kernels(sigma: torch.Tensor, size: int = BLUR_KERNEL) -> torch.Tensor:
    """``[M, size]`` normalised 1-d Gaussian kernels for ``[M]`` standard deviations (pixels)."""
    half = (size - 1) * 0.5
    t = torch.linspace(-half, half, size, dtype=torch.float32)
    k = torch.exp(-0.5 * (t.view(1, -1) / sigma.to(torch.float32).view(-1, 1)) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``gaussian_blur(kernel 15, sigma)``: separable blur of ``[M, H, W]``, reflect padding."""
    m, h, w = x.shape
    k = gaussian_kernels(sigma)
    pad = BLUR_KERNEL // 2
    xp = F.pad(x.unsqueeze(0), (pad, pad, pad, pad), mode="reflect")  # [1, M, H+2p, W+2p]
    xp = F.conv2d(xp, k.view(m, 1, 1, BLUR_KERNEL), groups=m)
    xp = F.conv2d(xp, k.view(m, 1, BLUR_KERNEL, 1), groups=m)
    return xp.squeeze(0)


def random_blur(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``GaussianBlur(15, sigma=(0.1, 2.0))``: sigma uniform per image."""
    return blur(x, _uniform(x.shape[0], *BLUR_SIGMA, g))


def sharpen(x: torch.Tensor, factor: float = SHARPNESS) -> torch.Tensor:
    """``adjust_sharpness(factor)`` of ``[M, H, W]``: blend with the image smoothed by the 3x3 kernel
    ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``, border pixels kept, clipped to [0, 1]."""
    rows = x[:, :, :-2] + x[:, :, 1:-1] + x[:, :, 2:]
    box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]  # [M, H-2, W-2] 3x3 sums
    inner = x[:, 1:-1, 1:-1]
    smooth = (box + 4.0 * inner) / 13.0
    out = x.clone()
    out[:, 1:-1, 1:-1] = factor * inner + (1.0 - factor) * smooth
    return out.clamp_(0.0, 1.0)


def apply_pipeline(index: int, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Pipeline ``PIPELINES[index]`` applied to every image of ``[M, H, W]``."""
    name = PIPELINES[index]
    if name == "identity":
        return x.clone()
    if name == "perspective-0.5":
        return random_perspective(x, 0.5, g)
    if name == "perspective-0.9":
        return random_perspective(x, 0.9, g)
    if name == "erase":
        return random_erasing(x, g)
    if name == "noise":
        return gaussian_noise(x, g)
    if name == "erase+perspective-0.5":
        return random_perspective(random_erasing(x, g), 0.5, g)
    if name == "blur":
        return random_blur(x, g)
    return sharpen(x)


def resize_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """``[size_out, size_in]`` bilinear interpolation weights (``align_corners=False``, as
    ``F.interpolate``), so ``R @ X @ R.T`` resizes a square image ``X`` with two matmuls."""
    scale = size_in / size_out
    src = ((torch.arange(size_out, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=size_in - 1)
    i1 = (i0 + 1).clamp(max=size_in - 1)
    frac = src - i0
    r = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    r.index_put_((rows, i0), 1.0 - frac, accumulate=True)
    r.index_put_((rows, i1), frac, accumulate=True)
    return r.to(torch.float32)


def resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """``[M, S, S]`` -> ``[M, side, side]`` bilinear (``F.interpolate``'s result, via two matmuls)."""
    if x.shape[-1] == side:
        return x
    r = resize_matrix(x.shape[-1], side)
    return torch.matmul(torch.matmul(r, x), r.T)


def transform_grouped(x: torch.Tensor, counts: list[int], g: torch.Generator) -> torch.Tensor:
    """``[M, H, W]`` images grouped by pipeline: the first ``counts[0]`` rows go through pipeline 0,
    the next ``counts[1]`` through pipeline 1, and so on (one batch per pipeline, at most eight).

    Each result is clamped to the value range of its untransformed image. Works in place: ``x`` is
    overwritten and returned.
    """
    low, high = x.view(x.shape[0], -1).aminmax(dim=1)
    start = 0
    for index, count in enumerate(counts):
        if count and PIPELINES[index] != "identity":
            x[start : start + count] = apply_pipeline(index, x[start : start + count], g)
        start += count
    return x.clamp_(min=low.view(-1, 1, 1), max=high.view(-1, 1, 1))
