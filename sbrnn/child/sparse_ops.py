"""The sparse x path: the input projection computed over the kept entries of a block only.

The input projection ``x W^T`` of a sparse block RNN is its largest product (RAD: ``n_x = 2,500``
inputs against ``h + n_y`` rows), yet at the balanced configuration only about 8% of ``W_hx`` is
kept. The masked-dense form pays for every entry. Here the block is held as a pattern of kept
entries (CSR by row for the forward product, CSC by column for the gradient) and:

- forward: ``out[n, r] = sum_{c kept in row r} W[r, c] x[n, c]`` (a sparse-dense product);
- backward: only the weight gradient, and only at kept entries,
  ``dW[r, c] = sum_n g[n, r] x[n, c]`` (a sampled dense-dense product). The input is data and
  needs no gradient, so the ``g W`` product of a dense layer is never formed.

Both read the input in a tile-major layout (:attr:`~sbrnn.child.kernels.Kernels.tile` = 32 inputs
of every column contiguous, one tile a few hundred kB: cache-friendly gathers of kept columns). The
forward transposes each tile and uses it while it is still in cache (keeping the tiles for the
gradient) and adds the bias; rows that keep every column (a dense ``W_yx``) go two at a time, each
loaded column serving both; the gradient reduces a column's entries eight at a time. They run in
the compiled kernels, as the torch ops ``sbrnn::tiles``, ``sbrnn::spmm`` and ``sbrnn::sddmm`` of
:mod:`sbrnn.child.kernels` (which check their arguments; ``torch.compile`` traces them); where
those are unavailable, callers use the masked-dense form. fp32 only: under bf16 autocast the
product runs in fp32. The sparse recurrence (:mod:`sbrnn.child.recurrence`) uses the same kernels
for ``W_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sbrnn.child import kernels


@dataclass(frozen=True, eq=False)
class SparsePattern:
    """The kept entries of a ``[R, C]`` 0/1 mask, indexed both ways.

    Attributes:
        shape: ``(R, C)``.
        flat: ``[nnz]`` int64 positions ``r * C + c`` in row-major order (CSR order), for
            gathering the kept values of a dense ``[R, C]`` weight.
        indptr: ``[R + 1]`` int64 row pointers; cols: ``[nnz]`` int32 column of each entry.
        colptr: ``[C + 1]`` int64 column pointers; rows: ``[nnz]`` int32 row of each entry in
            column order; colpos: ``[nnz]`` int64 position in CSR order of each entry in column
            order (where its weight gradient lands).
    """

    shape: tuple[int, int]
    flat: torch.Tensor
    indptr: torch.Tensor
    cols: torch.Tensor
    colptr: torch.Tensor
    rows: torch.Tensor
    colpos: torch.Tensor
    _flat_on: dict[torch.device, torch.Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> SparsePattern:
        """The pattern of the nonzeros of a 2-D ``mask`` (any device; indices live on the CPU)."""
        mask = mask.detach().to("cpu") != 0
        n_rows, n_cols = mask.shape
        flat = mask.reshape(-1).nonzero().squeeze(1)
        row, col = flat // n_cols, flat % n_cols
        indptr = torch.zeros(n_rows + 1, dtype=torch.int64)
        indptr[1:] = torch.bincount(row, minlength=n_rows).cumsum(0)
        pos = torch.argsort(col * n_rows + row)
        colptr = torch.zeros(n_cols + 1, dtype=torch.int64)
        colptr[1:] = torch.bincount(col, minlength=n_cols).cumsum(0)
        return cls(
            shape=(n_rows, n_cols),
            flat=flat,
            indptr=indptr,
            cols=col.to(torch.int32),
            colptr=colptr,
            rows=row[pos].to(torch.int32).contiguous(),
            colpos=pos.contiguous(),
        )

    def flat_on(self, device: torch.device | str) -> torch.Tensor:
        """:attr:`flat` on ``device`` (copied there on first use, then kept)."""
        device = torch.device(device)
        if device.type == "cpu":
            return self.flat
        if device not in self._flat_on:
            self._flat_on[device] = self.flat.to(device)
        return self._flat_on[device]

    def gather(self, dense: torch.Tensor) -> torch.Tensor:
        """``dense [R, C]`` (any device) at the kept entries: ``[nnz]`` in CSR order."""
        return dense.reshape(-1).index_select(0, self.flat_on(dense.device))

    def scatter(self, values: torch.Tensor) -> torch.Tensor:
        """``values [nnz]`` (CSR order) as the dense ``[R, C]``, 0 off the pattern; gradients flow
        back into ``values``."""
        dense = values.new_zeros(self.shape[0] * self.shape[1])
        return dense.index_put((self.flat_on(values.device),), values).view(self.shape)

    @property
    def nnz(self) -> int:
        return self.flat.numel()

    @property
    def density(self) -> float:
        """Kept entries over all entries."""
        return self.nnz / max(1, self.shape[0] * self.shape[1])


def _fits(pattern: SparsePattern, name: str, tensor: torch.Tensor, columns: int) -> None:
    """:class:`ValueError` unless ``tensor``'s last size is ``columns`` (one of ``pattern``'s sizes)."""
    if tensor.shape[-1] != columns:
        rows, cols = pattern.shape
        raise ValueError(
            f"{name} must have {columns} columns for the pattern of a {rows} x {cols} map, "
            f"got shape {tuple(tensor.shape)}"
        )


def _unit_columns(a: torch.Tensor) -> torch.Tensor:
    """``a [N, C]``, copied contiguous where its column stride is not 1 (the kernels read rows)."""
    return a.contiguous() if a.dim() == 2 and a.stride(1) != 1 else a


def tiles(a: torch.Tensor) -> torch.Tensor:
    """``a [N, C]`` (fp32, CPU; made unit column stride where it is not) -> its tile-major layout
    ``[ceil(N / tile), C, tile]``, zero-padded (the op ``sbrnn::tiles``; ``tile`` = 32)."""
    return kernels.tiles(_unit_columns(a))


def product(
    x: torch.Tensor, values: torch.Tensor, pattern: SparsePattern, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x W^T + bias [N, R], tiles of x [ceil(N / tile), C, tile])`` over the kept entries of
    ``pattern`` (``values [nnz]`` in its CSR order, ``bias [R]``) for ``x [N, C]`` (unit column
    stride), all fp32 on the CPU: the op ``sbrnn::spmm``."""
    _fits(pattern, "x", x, pattern.shape[1])
    return kernels.spmm(pattern.indptr, pattern.cols, values, bias, x)


def kept_gradient(
    grad_out: torch.Tensor, x_tiles: torch.Tensor, n: int, pattern: SparsePattern
) -> torch.Tensor:
    """``dW = grad_out^T x`` at the kept entries of ``pattern`` only, ``[nnz]`` in its CSR order,
    for ``grad_out [n, R]`` and ``x [n, C]`` given by its tiles (:func:`tiles`): the op
    ``sbrnn::sddmm``."""
    _fits(pattern, "grad_out", grad_out, pattern.shape[0])
    if grad_out.shape[0] != n:
        raise ValueError(f"grad_out must have n = {n} rows (those of x), got {grad_out.shape[0]}")
    g = _unit_columns(grad_out.float())
    return kernels.sddmm(pattern.colptr, pattern.rows, pattern.colpos, g, x_tiles)


class SparseXProduct(torch.autograd.Function):
    """``values [nnz], bias [R], x [N, C] -> x W^T + b [N, R]`` for the map ``W [R, C]`` whose kept
    entries (those of ``pattern``, in its CSR order) are ``values``; ``x`` gets no gradient."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, values: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, pattern: SparsePattern):
        out, x_tiles = product(x, values.detach().contiguous(), pattern, bias.detach().contiguous())
        ctx.pattern = pattern
        ctx.save_for_backward(x_tiles)
        ctx.n = x.shape[0]
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_out: torch.Tensor):
        (x_tiles,) = ctx.saved_tensors
        grad = kept_gradient(grad_out, x_tiles, ctx.n, ctx.pattern)
        grad_bias = grad_out.float().sum(0) if ctx.needs_input_grad[1] else None
        return grad, grad_bias, None, None


def sparse_x_product(
    x: torch.Tensor, values: torch.Tensor, pattern: SparsePattern, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x [..., C]`` (fp32, CPU, no gradient) times ``W^T`` plus ``bias [R]`` (None = no bias)
    -> ``[..., R]``, for the map ``W [R, C]`` whose kept entries are ``values [nnz]`` (in the CSR
    order of ``pattern``, e.g. ``pattern.gather(weight)`` of a dense one). The gradient
    of ``values`` is ``[nnz]`` as well.
    """
    if x.requires_grad:
        raise ValueError("the sparse x path gives no gradient for its input; use the masked-dense form")
    if values.shape != (pattern.nnz,):
        raise ValueError(
            f"values must hold the {pattern.nnz} kept entries of the pattern, got shape {tuple(values.shape)}"
        )
    if bias is None:
        bias = values.new_zeros(pattern.shape[0])
    lead = x.shape[:-1]
    out = SparseXProduct.apply(values, bias, x.reshape(-1, x.shape[-1]).contiguous(), pattern)
    return out.reshape(*lead, pattern.shape[0])
