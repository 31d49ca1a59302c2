"""The recurrence of a sparse block RNN as one autograd node, with a hand-written backward.

Given the projected inputs ``p_t = W_x x_t + b`` (``[B, T, h + n_y]``) and the masked state map
``W_s`` (``[h + n_y, h + n_y]``), the map is, for ``t = 0 .. T-1`` with ``s_{-1} = 0``::

    a_t = p_t + s_{t-1} W_s^T,     s_t = [act(a_t[:h]); a_t[h:]],     y_t = a_t[h:]

Autograd through that loop records about ten small ops per step. Here the forward keeps the
states and the backward runs the loop in reverse by hand (per step one product with ``W_s``
and the activation's derivative), then forms the gradient of ``W_s`` as one product over all
steps: ``dW_s = sum_t da_t^T s_{t-1}``. Same results as autograd, within fp32 rounding.
"""

from __future__ import annotations

import torch

from sbrnn.child import sparse_ops


def _product(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = bias + a @ b`` for one map (2-D) or a stack of maps (3-D), in one call."""
    return torch.addmm(bias, a, b, out=out) if a.dim() == 2 else torch.baddbmm(bias, a, b, out=out)


class BlockRecurrence(torch.autograd.Function):
    """``projected [(K,) B, T, R], weight_s [(K,) R, R] -> y [(K,) B, T, n_y]`` (``R = h + n_y``).

    With the leading ``K``, K independent maps (a population) run side by side. Per step the
    forward is two calls (the product into the state, the activation in place) and the backward
    two (``da_t = ds_t * act'(a_t) + dy_t`` in place, then ``ds_{t-1} = da_t W_s``).
    """

    @staticmethod
    def forward(ctx, projected: torch.Tensor, weight_s: torch.Tensor, h: int, activation: str):
        steps = projected.shape[-2]
        lead = projected.shape[:-2]  # (B,) or (K, B)
        states = projected.new_empty(steps + 1, *lead, projected.shape[-1])  # states[t + 1] = s_t
        states[0].zero_()
        weight_t = weight_s.transpose(-1, -2)
        for t in range(steps):
            if t:
                nxt = _product(projected.select(-2, t), states[t], weight_t, out=states[t + 1])
            else:  # s_{-1} = 0: a_0 = p_0
                nxt = states[1].copy_(projected.select(-2, 0))
            if activation == "relu":
                nxt[..., :h].clamp_min_(0.0)
            else:
                nxt[..., :h].tanh_()
        ctx.save_for_backward(states, weight_s)
        ctx.h, ctx.activation = h, activation
        return torch.movedim(states[1:, ..., h:], 0, -2)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        states, weight_s = ctx.saved_tensors
        h, steps, size = ctx.h, states.shape[0] - 1, states.shape[-1]
        # act'(a_t) for all steps at once (1 on the y part, which has no activation)
        slope = torch.ones_like(states[1:])
        if ctx.activation == "relu":  # s >= 0 after relu: its sign is 1 where a_t > 0, else 0
            torch.sign(states[1:, ..., :h], out=slope[..., :h])
        else:
            torch.addcmul(slope[..., :h], states[1:, ..., :h], states[1:, ..., :h], value=-1.0,
                          out=slope[..., :h])
        grad_a = torch.zeros_like(states[1:])  # starts as dy_t on the y part, then += ds_t * act'
        grad_a[..., h:] = torch.movedim(grad_y, -2, 0)
        grad_s = torch.empty_like(states[0])  # gradient reaching s_t from step t + 1
        for t in range(steps - 1, -1, -1):
            if t < steps - 1:
                grad_a[t].addcmul_(grad_s, slope[t])
            if t:
                torch.matmul(grad_a[t], weight_s, out=grad_s)
        # dW_s = sum_t da_t^T s_{t-1}, from t = 1 (s_{-1} = 0)
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


class SparseBlockRecurrence(torch.autograd.Function):
    """The recurrence of :class:`BlockRecurrence` over the kept entries of ``W_s`` only (CPU, fp32).

    ``projected [B, T, R], weight_s [R, R] -> y [B, T, n_y]``, with ``W_s`` read at the entries of
    ``pattern`` (its mask) and ``pattern_t`` (the same entries, transposed). Per step the forward is
    a sparse product ``s_{t-1} W_s^T`` (:func:`~sbrnn.child.sparse_ops` kernels) plus ``p_t``; the
    backward forms ``ds_{t-1} = da_t W_s`` over the transposed pattern, and the gradient of
    ``W_s`` at kept entries only, as one sampled product over all steps. Gradients of ``W_s``
    off the pattern are 0.
    """

    @staticmethod
    def forward(ctx, projected, weight_s, pattern, pattern_t, h: int, activation: str):
        batch, steps, size = projected.shape
        lib, threads = sparse_ops.kernels(), torch.get_num_threads()
        values = weight_s.detach().reshape(-1).index_select(0, pattern.flat)
        no_bias = projected.new_zeros(size)
        tiles = projected.new_empty(-(-batch // sparse_ops.TILE), size, sparse_ops.TILE)  # scratch
        states = projected.new_empty(steps + 1, batch, size)  # states[t + 1] = s_t
        states[0].zero_()
        for t in range(steps):
            nxt = states[t + 1]
            if t:
                lib.sbrnn_spmm(
                    pattern.indptr.data_ptr(), pattern.cols.data_ptr(), values.data_ptr(), no_bias.data_ptr(),
                    size, states[t].data_ptr(), batch, size, size, tiles.data_ptr(), nxt.data_ptr(), size,
                    threads,
                )
                nxt += projected[:, t]
            else:  # s_{-1} = 0: a_0 = p_0
                nxt.copy_(projected[:, 0])
            if activation == "relu":
                nxt[:, :h].clamp_min_(0.0)
            else:
                nxt[:, :h].tanh_()
        ctx.save_for_backward(states, weight_s)
        ctx.pattern, ctx.pattern_t, ctx.h, ctx.activation = pattern, pattern_t, h, activation
        return torch.movedim(states[1:, :, h:], 0, 1)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        states, weight_s = ctx.saved_tensors
        pattern, pattern_t, h = ctx.pattern, ctx.pattern_t, ctx.h
        steps, batch, size = states.shape[0] - 1, states.shape[1], states.shape[2]
        lib, threads = sparse_ops.kernels(), torch.get_num_threads()
        values_t = weight_s.detach().t().reshape(-1).index_select(0, pattern_t.flat)  # W_s^T's kept entries
        no_bias = states.new_zeros(size)
        tiles = states.new_empty(-(-batch // sparse_ops.TILE), size, sparse_ops.TILE)
        slope = torch.ones_like(states[1:])
        if ctx.activation == "relu":
            torch.sign(states[1:, :, :h], out=slope[:, :, :h])
        else:
            torch.addcmul(slope[:, :, :h], states[1:, :, :h], states[1:, :, :h], value=-1.0,
                          out=slope[:, :, :h])
        grad_a = torch.zeros_like(states[1:])
        grad_a[:, :, h:] = torch.movedim(grad_y, 1, 0)
        grad_s = torch.empty_like(states[0])
        for t in range(steps - 1, -1, -1):
            if t < steps - 1:
                grad_a[t].addcmul_(grad_s, slope[t])
            if t:  # ds_{t-1} = da_t W_s
                lib.sbrnn_spmm(
                    pattern_t.indptr.data_ptr(), pattern_t.cols.data_ptr(), values_t.data_ptr(),
                    no_bias.data_ptr(), size, grad_a[t].data_ptr(), batch, size, size, tiles.data_ptr(),
                    grad_s.data_ptr(), size, threads,
                )
        # dW_s[r, c] = sum over t >= 1 and the batch of da_t[n, r] s_{t-1}[n, c], at kept entries
        n = (steps - 1) * batch
        grad_w = states.new_zeros(size, size)
        if n:
            g_tiles = sparse_ops.tiles(grad_a[1:].reshape(n, size))
            s_tiles = sparse_ops.tiles(states[1:-1].reshape(n, size))
            partial = states.new_empty(threads, pattern.nnz)
            lib.sbrnn_sddmm(
                pattern.colptr.data_ptr(), pattern.rows.data_ptr(), pattern.colflat.data_ptr(), size,
                g_tiles.data_ptr(), size, s_tiles.data_ptr(), n, pattern.nnz, grad_w.data_ptr(),
                partial.data_ptr(), threads,
            )
        grad_projected = torch.movedim(grad_a, 0, 1) if ctx.needs_input_grad[0] else None
        return grad_projected, grad_w, None, None, None, None


def sparse_block_recurrence(projected, weight_s, pattern, pattern_t, h: int, activation: str):
    """``y [B, T, n_y]`` of the recurrence over ``W_s``'s kept entries (see :class:`SparseBlockRecurrence`):
    ``pattern`` = ``SparsePattern.from_mask(mask_s)``, ``pattern_t`` = the same of ``mask_s.t()``."""
    return SparseBlockRecurrence.apply(projected, weight_s, pattern, pattern_t, h, activation)
