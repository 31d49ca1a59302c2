"""The recurrence of a sparse block RNN as one autograd node, with a hand-written backward.

Given the projected inputs ``p_t = W_x x_t + b`` (``[B, T, h + n_y]``) and the masked state map
``W_s`` (``[h + n_y, h + n_y]``), the map is, for ``t = 0 .. T-1`` with ``s_{-1} = 0``::

    a_t = p_t + s_{t-1} W_s^T,     s_t = [act(a_t[:h]); a_t[h:]],     y_t = a_t[h:]

Autograd through that loop records about ten small ops per step. Here the forward keeps the
states and the backward runs the loop in reverse by hand (per step one product with ``W_s``
and the activation's derivative), then forms the gradient of ``W_s`` over all steps at once:
``dW_s = sum_{t >= 1} da_t^T s_{t-1}``. Same results as autograd, within fp32 rounding.

Two forms: :class:`BlockRecurrence` multiplies the masked ``W_s`` densely (any device, a stack of
maps too; one fp32 map on the CPU in compiled loops); :class:`SparseBlockRecurrence` multiplies
over its kept entries only, with the sparse x path's CPU kernels (:mod:`sbrnn.child.sparse_ops`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sbrnn.child import sparse_ops
from sbrnn.child.kernels import library

_ACT = {"relu": 0, "tanh": 1}
"""The activation codes of kernels.c."""

Product = Callable[[int, torch.Tensor, torch.Tensor], None]
"""``product(t, s, out)``: writes ``p_t + s W_s^T`` (forward) or ``s W_s`` (backward, ``p``
unused) into ``out``."""


def _forward_loop(projected: torch.Tensor, h: int, activation: str, product: Product) -> torch.Tensor:
    """The states ``[T + 1, (K,) B, R]`` (``states[t + 1] = s_t``, ``states[0] = 0``); per step
    the product into the state, then the activation in place."""
    steps = projected.shape[-2]
    states = projected.new_empty(steps + 1, *projected.shape[:-2], projected.shape[-1])
    states[0].zero_()
    for t in range(steps):
        nxt = states[t + 1]
        if t:
            product(t, states[t], nxt)
        else:  # s_{-1} = 0: a_0 = p_0
            nxt.copy_(projected.select(-2, 0))
        if activation == "relu":
            nxt[..., :h].clamp_min_(0.0)
        else:
            nxt[..., :h].tanh_()
    return states


def _backward_loop(states: torch.Tensor, grad_y: torch.Tensor, h: int, activation: str,
                   state_grad: Product) -> torch.Tensor:
    """``da_t`` for all steps, ``[T, (K,) B, R]``: ``ds_t * act'(a_t)`` on the first ``h``
    columns, ``ds_t + dy_t`` on the others, with ``ds_{t-1} = da_t W_s`` from ``state_grad``."""
    steps, h_part = states.shape[0] - 1, (..., slice(None, h))
    slope = torch.ones_like(states[1:])  # act'(a_t) for all steps at once; 1 on the y part
    if activation == "relu":  # s >= 0 after relu: its sign is 1 where a_t > 0, else 0
        torch.sign(states[1:][h_part], out=slope[h_part])
    else:
        torch.addcmul(slope[h_part], states[1:][h_part], states[1:][h_part], value=-1.0, out=slope[h_part])
    grad_a = torch.zeros_like(states[1:])  # starts as dy_t on the y part, then += ds_t * act'
    grad_a[..., h:] = torch.movedim(grad_y, -2, 0)
    grad_s = torch.empty_like(states[0])  # gradient reaching s_t from step t + 1
    for t in range(steps - 1, -1, -1):
        if t < steps - 1:
            grad_a[t].addcmul_(grad_s, slope[t])
        if t:
            state_grad(t, grad_a[t], grad_s)
    return grad_a


_BLOCK_COLUMNS = 24
"""Columns of a product block in kernels.c (``NR``): the compiled loops read ``W_s`` padded to a
multiple of it."""


def _compiled(projected: torch.Tensor, weight_s: torch.Tensor):
    """The compiled kernels when they apply (CPU, fp32), else None."""
    if projected.device.type != "cpu":
        return None
    if projected.dtype != torch.float32 or weight_s.dtype != torch.float32:
        return None
    return library()


def _padded(weight: torch.Tensor) -> torch.Tensor:
    """``weight [K, R, R]`` with zero columns up to a multiple of :data:`_BLOCK_COLUMNS`, contiguous."""
    size = weight.shape[-1]
    out = weight.new_zeros(*weight.shape[:-1], -(-size // _BLOCK_COLUMNS) * _BLOCK_COLUMNS)
    out[..., :size] = weight
    return out


class BlockRecurrence(torch.autograd.Function):
    """``projected [(K,) B, T, R], weight_s [(K,) R, R] -> y [(K,) B, T, n_y]`` (``R = h + n_y``).

    With the leading ``K``, K independent maps (a population) run side by side. In fp32 on the CPU
    the loops run in the compiled kernels (:mod:`sbrnn.child.kernels`: all steps in one call, the
    activation and its derivative fused into the products); elsewhere in torch ops, two calls a
    step each way.
    """

    @staticmethod
    def forward(ctx, projected: torch.Tensor, weight_s: torch.Tensor, h: int, activation: str):
        lib = _compiled(projected, weight_s)
        if lib is not None:
            stack = projected.contiguous().reshape(-1, *projected.shape[-3:])  # [K, B, T, R]
            maps, batch, steps, size = stack.shape
            states = projected.new_empty(steps + 1, *projected.shape[:-2], size)
            weight_t = _padded(weight_s.detach().transpose(-1, -2))
            lib.sbrnn_recurrence_forward(
                stack.data_ptr(), weight_t.data_ptr(), weight_t.shape[-1], maps, batch, steps, size, h,
                _ACT[activation], states.data_ptr(), torch.get_num_threads(),
            )
        else:
            weight_t = weight_s.transpose(-1, -2)
            batched = torch.addmm if weight_s.dim() == 2 else torch.baddbmm

            def product(t, s, out):
                batched(projected.select(-2, t), s, weight_t, out=out)

            states = _forward_loop(projected, h, activation, product)
        ctx.save_for_backward(states, weight_s)
        ctx.h, ctx.activation, ctx.compiled = h, activation, lib is not None
        return torch.movedim(states[1:, ..., h:], 0, -2)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        states, weight_s = ctx.saved_tensors
        size = states.shape[-1]
        if ctx.compiled:
            steps, batch = states.shape[0] - 1, states.shape[-2]
            maps = weight_s.shape[0] if weight_s.dim() == 3 else 1
            grad_a = torch.empty_like(states[1:])
            weight = _padded(weight_s.detach())
            grad_y = grad_y.float().contiguous()
            library().sbrnn_recurrence_backward(
                states.data_ptr(), grad_y.data_ptr(), weight.data_ptr(), weight.shape[-1], maps, batch, steps,
                size, ctx.h, _ACT[ctx.activation], grad_a.data_ptr(), torch.get_num_threads(),
            )
        else:
            grad_a = _backward_loop(states, grad_y, ctx.h, ctx.activation,
                                    lambda t, g, out: torch.matmul(g, weight_s, out=out))
        if weight_s.dim() == 2:
            grad_w = grad_a[1:].reshape(-1, size).t() @ states[1:-1].reshape(-1, size)
        else:  # per map k: sum over steps and batch of da^T s
            k = weight_s.shape[0]
            ga = grad_a[1:].transpose(0, 1).reshape(k, -1, size)
            sa = states[1:-1].transpose(0, 1).reshape(k, -1, size)
            grad_w = torch.bmm(ga.transpose(1, 2), sa)
        grad_projected = torch.movedim(grad_a, 0, -2) if ctx.needs_input_grad[0] else None
        return grad_projected, grad_w, None, None


def block_recurrence(projected: torch.Tensor, weight_s: torch.Tensor, h: int, activation: str):
    """``y [(K,) B, T, n_y]`` of the recurrence (see the module docstring); ``activation`` relu or tanh."""
    return BlockRecurrence.apply(projected, weight_s, h, activation)


def _sparse_product(pattern: sparse_ops.SparsePattern, values: torch.Tensor, batch: int) -> Product:
    """``out = s M^T`` over the kept entries of the ``[R, R]`` map ``M`` (``pattern``, ``values``
    in its CSR order) for ``s [B, R]``, with the x path's product kernel (a scratch tile buffer)."""
    size = pattern.shape[0]
    no_bias = values.new_zeros(size)
    tiles = values.new_empty(-(-batch // sparse_ops.TILE), size, sparse_ops.TILE)

    def product(t, s, out):
        sparse_ops.product_into(s, values, pattern, no_bias, tiles, out)

    return product


class SparseBlockRecurrence(torch.autograd.Function):
    """The recurrence over the kept entries of ``W_s`` only (CPU, fp32, one map).

    ``projected [B, T, R], weight_s [R, R] -> y [B, T, n_y]``, with ``W_s`` read at the entries of
    ``pattern`` (its mask) and ``pattern_t`` (the same entries, transposed). Per step the forward
    is a sparse product ``s_{t-1} W_s^T`` plus ``p_t``; the backward forms ``ds_{t-1} = da_t W_s``
    over the transposed pattern, and the gradient of ``W_s`` at kept entries only, as one sampled
    product over all steps (0 off the pattern).
    """

    @staticmethod
    def forward(ctx, projected, weight_s, pattern, pattern_t, h: int, activation: str):
        values = weight_s.detach().reshape(-1).index_select(0, pattern.flat)
        sparse = _sparse_product(pattern, values, projected.shape[0])

        def product(t, s, out):
            sparse(t, s, out)
            out += projected[:, t]

        states = _forward_loop(projected, h, activation, product)
        ctx.save_for_backward(states, weight_s)
        ctx.pattern, ctx.pattern_t, ctx.h, ctx.activation = pattern, pattern_t, h, activation
        return torch.movedim(states[1:, :, h:], 0, 1)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        states, weight_s = ctx.saved_tensors
        pattern, pattern_t = ctx.pattern, ctx.pattern_t
        batch, size = states.shape[1:]
        values_t = weight_s.detach().t().reshape(-1).index_select(0, pattern_t.flat)  # W_s^T's kept entries
        grad_a = _backward_loop(states, grad_y, ctx.h, ctx.activation,
                                _sparse_product(pattern_t, values_t, batch))
        # dW_s[r, c] = sum over t >= 1 and the batch of da_t[n, r] s_{t-1}[n, c], at kept entries
        n = (states.shape[0] - 2) * batch  # T - 1 steps
        if n:
            s_tiles = sparse_ops.tiles(states[1:-1].reshape(n, size))
            grad_w = sparse_ops.kept_gradient(grad_a[1:].reshape(n, size), s_tiles, n, pattern)
        else:
            grad_w = states.new_zeros(size, size)
        grad_projected = torch.movedim(grad_a, 0, 1) if ctx.needs_input_grad[0] else None
        return grad_projected, grad_w, None, None, None, None


def sparse_block_recurrence(projected, weight_s, pattern, pattern_t, h: int, activation: str):
    """``y [B, T, n_y]`` of the recurrence over ``W_s``'s kept entries (see :class:`SparseBlockRecurrence`):
    ``pattern`` = ``SparsePattern.from_mask(mask_s)``, ``pattern_t`` = the same of ``mask_s.t()``."""
    return SparseBlockRecurrence.apply(projected, weight_s, pattern, pattern_t, h, activation)
