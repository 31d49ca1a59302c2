"""Write ``torchvision_v2.safetensors``: torchvision.transforms.v2's outputs that
``tests/test_rad.py`` holds the batched transforms of :mod:`sbrnn.datasets.transforms` to.

Run from the repository root where torchvision is installed (it is not a dependency of sbrnn):
``python tests/reference/torchvision_v2.py``. The inputs are made exactly as the test makes them
and are stored too, so the test can tell a changed input from a changed transform. Stored with
torch 2.14.1 and torchvision 0.29.1.
"""

from pathlib import Path

import torch
import torchvision
import torchvision.transforms.v2.functional as TF
from safetensors.torch import save_file

from sbrnn.datasets import sources, transforms

#: One standard deviation per image for the Gaussian blur, kernel 15 x 15.
SIGMA = (0.1, 0.4, 0.9, 1.3, 1.7, 2.0)
SHARPNESS = 4.0
START = ((0, 0), (49, 0), (49, 49), (0, 49))


def inputs() -> dict[str, torch.Tensor]:
    """Six upsampled digits at side 50 ``[6, 50, 50]`` in [0, 1] and perspective end corners
    ``[6, 4, 2]`` drawn with seed 0 and distortion 0.9."""
    images, _ = sources.upsampled_digits()
    x = transforms.resize(images[:6].float() / 255, 50)
    end = transforms.perspective_endpoints(6, 50, 50, 0.9, torch.Generator().manual_seed(0))
    return {"x": x, "end": end}


def reference(x: torch.Tensor, end: torch.Tensor) -> dict[str, torch.Tensor]:
    """torchvision's perspective, blur and sharpness of each image, each ``[6, 50, 50]``."""
    start = [list(c) for c in START]
    warped = [TF.perspective(x[i : i + 1], start, end[i].long().tolist())[0] for i in range(len(x))]
    blurred = [TF.gaussian_blur(x[i : i + 1], [15, 15], [s, s])[0] for i, s in enumerate(SIGMA)]
    sharp = TF.adjust_sharpness(x.unsqueeze(1), SHARPNESS).squeeze(1)
    return {"perspective": torch.stack(warped), "blur": torch.stack(blurred), "sharpness": sharp}


if __name__ == "__main__":
    made = inputs()
    out = Path(__file__).with_suffix(".safetensors")
    tensors = {**made, **reference(made["x"], made["end"])}
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(out),
        metadata={"torch": torch.__version__, "torchvision": torchvision.__version__},
    )
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
