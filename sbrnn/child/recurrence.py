"""The recurrence of a sparse block RNN as one autograd node, with a hand-written backward.

Given the projected inputs ``p_t = W_x x_t + b`` (``[B, T, h + n_y]``) and the masked state map
``W_s`` (``[h + n_y, h + n_y]``), the map is, for ``t = 0 .. T-1`` with ``s_{-1} = 0``::

    a_t = p_t + s_{t-1} W_s^T,     s_t = [act(a_t[:h]); a_t[h:]],     y_t = a_t[h:]

Autograd through that loop records about ten small ops per step. Here the forward keeps the
states and the backward runs the loop in reverse by hand (per step one product with ``W_s``
and the activation's derivative), then forms the gradient of ``W_s`` over all steps at once:
``dW_s = sum_{t >= 1} da_t^T s_{t-1}``. Same results as autograd, within fp32 rounding.

Two forms: :class:`BlockRecurrence` multiplies the masked ``W_s`` densely (any device, a stack of
maps too; fp32 on the CPU in compiled loops, the ops ``sbrnn::recurrence_forward`` and
``sbrnn::recurrence_backward`` of :mod:`sbrnn.child.kernels`); :class:`SparseBlockRecurrence`
multiplies over its kept entries only, with the sparse x path's CPU kernels
(:mod:`sbrnn.child.sparse_ops`), its loops the ops ``sbrnn::sparse_recurrence_forward`` and
``sbrnn::sparse_recurrence_backward`` defined here (one op call per direction, the kernel called
directly at each step).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sbrnn.child import kernels, sparse_ops
from sbrnn.child.kernels import kernel_op

Product = Callable[[int, torch.Tensor, torch.Tensor], object]
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


def _backward_loop(
    states: torch.Tensor,
    grad_y: torch.Tensor | None,
    h: int,
    activation: str,
    state_grad: Product,
    grad_final: torch.Tensor | None = None,
) -> torch.Tensor:
    """``da_t`` for all steps, ``[T, (K,) B, R]``: ``ds_t * act'(a_t)`` on the first ``h``
    columns, ``ds_t + dy_t`` on the others, with ``ds_{t-1} = da_t W_s`` from ``state_grad`` and
    ``ds_{T-1}`` the gradient ``grad_final`` of the final state (0 when None); ``grad_y`` None = 0."""
    steps, h_part = states.shape[0] - 1, (..., slice(None, h))
    slope = torch.ones_like(states[1:])  # act'(a_t) for all steps at once; 1 on the y part
    if activation == "relu":  # s >= 0 after relu: its sign is 1 where a_t > 0, else 0
        slope[h_part] = torch.sign(states[1:][h_part])
    else:
        slope[h_part].addcmul_(states[1:][h_part], states[1:][h_part], value=-1.0)
    grad_a = torch.zeros_like(states[1:])  # starts as dy_t on the y part, then += ds_t * act'
    if grad_y is not None:
        grad_a[..., h:] = torch.movedim(grad_y, -2, 0)
    grad_s = torch.empty_like(states[0])  # gradient reaching s_t from step t + 1
    for t in range(steps - 1, -1, -1):
        if t < steps - 1:
            grad_a[t].addcmul_(grad_s, slope[t])
        elif grad_final is not None:
            grad_a[t].addcmul_(grad_final, slope[t])
        if t:
            state_grad(t, grad_a[t], grad_s)
    return grad_a


def _compiled(projected: torch.Tensor, weight_s: torch.Tensor) -> bool:
    """Whether the compiled kernels apply (CPU, fp32, kernels built)."""
    if projected.device.type != "cpu":
        return False
    if projected.dtype != torch.float32 or weight_s.dtype != torch.float32:
        return False
    return kernels.available()


def _final_state_gradient(
    states: torch.Tensor, grad_final: torch.Tensor, h: int, activation: str, weight_s: torch.Tensor
) -> torch.Tensor:
    """``da_t`` ``[T, (K,) B, R]`` due to a gradient on the final state alone (``dy = 0``), by the
    torch loop over the masked dense map: added to the outputs' part, as the backward is linear."""
    return _backward_loop(
        states, None, h, activation, lambda t, g, out: torch.matmul(g, weight_s, out=out), grad_final
    )


class BlockRecurrence(torch.autograd.Function):
    """``projected [(K,) B, T, R], weight_s [(K,) R, R] -> (y [(K,) B, T, n_y], s_{T-1} [(K,) B, R])``
    (``R = h + n_y``): the outputs of every step and the final state.

    With the leading ``K``, K independent maps (a population) run side by side. In fp32 on the CPU
    the loops run in the compiled kernels (:mod:`sbrnn.child.kernels`: all steps in one call, the
    activation and its derivative fused into the products); elsewhere in torch ops, two calls a
    step each way. A gradient on the final state (used by :meth:`SparseBlockRNN.forward_with_state`
    callers) adds one backward pass in torch ops.
    """

    @staticmethod
    def forward(ctx, projected: torch.Tensor, weight_s: torch.Tensor, h: int, activation: str):
        compiled = _compiled(projected, weight_s)
        if compiled:
            stack = projected.contiguous().reshape(-1, *projected.shape[-3:])  # [K, B, T, R]
            size = stack.shape[-1]
            maps = weight_s.detach().reshape(-1, size, size)  # [K, R, R]
            states = kernels.recurrence_forward(stack, maps, h, activation)
            states = states.reshape(states.shape[0], *projected.shape[:-2], size)  # [T + 1, (K,) B, R]
        else:
            weight_t = weight_s.transpose(-1, -2)
            batched = torch.addmm if weight_s.dim() == 2 else torch.baddbmm

            def product(t, s, out):
                batched(projected.select(-2, t), s, weight_t, out=out)

            states = _forward_loop(projected, h, activation, product)
        ctx.save_for_backward(states, weight_s)
        ctx.h, ctx.activation, ctx.compiled = h, activation, compiled
        ctx.set_materialize_grads(False)
        return torch.movedim(states[1:, ..., h:], 0, -2), states[-1]

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor | None, grad_final: torch.Tensor | None):
        states, weight_s = ctx.saved_tensors
        size = states.shape[-1]
        if grad_y is None:
            grad_y = states.new_zeros(*states.shape[1:-1], size - ctx.h).movedim(0, -2)
        if ctx.compiled:
            steps, batch = states.shape[0] - 1, states.shape[-2]
            grad_y = grad_y.float().contiguous().reshape(-1, batch, steps, size - ctx.h)  # [K, B, T, n_y]
            stack = states.reshape(steps + 1, -1, batch, size)  # [T + 1, K, B, R]
            maps = weight_s.detach().reshape(-1, size, size)  # [K, R, R]
            grad_a = kernels.recurrence_backward(stack, grad_y, maps, ctx.h, ctx.activation)
            grad_a = grad_a.reshape(states[1:].shape)  # [T, (K,) B, R]
        else:
            grad_a = _backward_loop(
                states, grad_y, ctx.h, ctx.activation, lambda t, g, out: torch.matmul(g, weight_s, out=out)
            )
        if grad_final is not None:
            grad_a = grad_a + _final_state_gradient(states, grad_final, ctx.h, ctx.activation, weight_s)
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
    """``(y [(K,) B, T, n_y], final state [(K,) B, R])`` of the recurrence (see the module docstring);
    ``activation`` relu or tanh."""
    return BlockRecurrence.apply(projected, weight_s, h, activation)


def _check_sparse(op: str, name: str, states: Tensor, h: int, activation: str) -> tuple[int, int, int]:
    """The sizes of ``states`` (``projected [B, T, R]`` or ``states [T + 1, B, R]``), after
    checking it (3-D fp32 contiguous) with ``h`` and ``activation``."""
    kernels.check_tensor(op, name, states, torch.float32, 3)
    kernels.check_activation(op, h, states.shape[2], activation)
    steps, batch, size = states.shape
    return steps, batch, size


def _check_rows(op: str, name: str, indptr: Tensor, size: int) -> None:
    """The row pointers of an ``[R, R]`` map (``indptr``, named ``name``), checked against ``R = size``
    (:class:`~sbrnn.child.kernels.SparseProduct` or :func:`~sbrnn.child.kernels.check_pattern` the rest)."""
    kernels.check_tensor(op, name, indptr, torch.int64, 1)
    kernels.check_shape(op, name, indptr, (size + 1,), "R + 1, R of the states")


@kernel_op("sbrnn::sparse_recurrence_forward")
def sparse_recurrence_forward(
    projected: Tensor, indptr: Tensor, cols: Tensor, values: Tensor, h: int, activation: str
) -> Tensor:
    """The states of the recurrence over the kept entries of ``W_s``: per step the sparse x path's
    product kernel (:class:`~sbrnn.child.kernels.SparseProduct`) forms ``s_{t-1} W_s^T``, then
    ``p_t`` is added and the activation applied on the first ``h`` columns.

    Args:
        projected: ``[B, T, R]`` fp32 contiguous, the projected inputs ``p``.
        indptr, cols, values: ``W_s``'s kept entries in CSR order (``[R + 1]`` int64, ``[nnz]``
            int32, ``[nnz]`` fp32), as :func:`sbrnn.child.kernels.spmm` takes them.
        h: the columns ``act`` applies to, ``0 <= h <= R``.
        activation: ``relu`` or ``tanh``.

    Returns:
        ``states [T + 1, B, R]`` fp32 with ``states[t + 1] = s_t`` and ``states[0] = 0``.
    """
    op = "sbrnn::sparse_recurrence_forward"
    batch, _, size = _check_sparse(op, "projected", projected, h, activation)
    _check_rows(op, "indptr", indptr, size)
    kernels.check_cpu(op, projected=projected)
    product = kernels.SparseProduct(op, indptr, cols, values, projected.new_zeros(size), batch, size)

    def step(t, s, out):
        product(s, out)
        out += projected[:, t]

    return _forward_loop(projected, h, activation, step)


@sparse_recurrence_forward.register_fake
def _(projected: Tensor, indptr: Tensor, cols: Tensor, values: Tensor, h: int, activation: str) -> Tensor:
    op = "sbrnn::sparse_recurrence_forward"
    batch, steps, size = _check_sparse(op, "projected", projected, h, activation)
    _check_rows(op, "indptr", indptr, size)
    kernels.check_pattern(op, indptr, cols, values, projected.new_empty(size))
    return projected.new_empty(steps + 1, batch, size)


def _check_backward_sparse(states: Tensor, grad_y: Tensor, h: int, activation: str) -> tuple[int, int, int]:
    """``(T, B, R)`` of :func:`sparse_recurrence_backward`'s arguments, after checking them."""
    op = "sbrnn::sparse_recurrence_backward"
    steps, batch, size = _check_sparse(op, "states", states, h, activation)
    if steps < 1:
        raise ValueError(f"{op}: states must hold T + 1 >= 1 steps, got shape {tuple(states.shape)}")
    kernels.check_tensor(op, "grad_y", grad_y, torch.float32, 3)
    kernels.check_shape(op, "grad_y", grad_y, (batch, steps - 1, size - h), "B, T, R - h of states")
    return steps - 1, batch, size


@kernel_op("sbrnn::sparse_recurrence_backward")
def sparse_recurrence_backward(
    states: Tensor,
    grad_y: Tensor,
    indptr_t: Tensor,
    cols_t: Tensor,
    values_t: Tensor,
    h: int,
    activation: str,
) -> Tensor:
    """The gradients ``da_t`` of the pre-activations of :func:`sparse_recurrence_forward`, with
    ``ds_{t-1} = da_t W_s`` per step over the kept entries of ``W_s^T``.

    Args:
        states: ``[T + 1, B, R]`` fp32 contiguous, as the forward returned them.
        grad_y: ``[B, T, R - h]`` fp32 contiguous, the gradient of the outputs ``y_t = a_t[h:]``.
        indptr_t, cols_t, values_t: ``W_s^T``'s kept entries in CSR order (the transposed pattern).
        h, activation: as in the forward.

    Returns:
        ``grad_a [T, B, R]`` fp32.
    """
    op = "sbrnn::sparse_recurrence_backward"
    steps, batch, size = _check_backward_sparse(states, grad_y, h, activation)
    _check_rows(op, "indptr_t", indptr_t, size)
    kernels.check_cpu(op, states=states, grad_y=grad_y)
    product = kernels.SparseProduct(op, indptr_t, cols_t, values_t, states.new_zeros(size), batch, size)
    return _backward_loop(states, grad_y, h, activation, lambda t, g, out: product(g, out))


@sparse_recurrence_backward.register_fake
def _(
    states: Tensor,
    grad_y: Tensor,
    indptr_t: Tensor,
    cols_t: Tensor,
    values_t: Tensor,
    h: int,
    activation: str,
) -> Tensor:
    op = "sbrnn::sparse_recurrence_backward"
    steps, batch, size = _check_backward_sparse(states, grad_y, h, activation)
    _check_rows(op, "indptr_t", indptr_t, size)
    kernels.check_pattern(op, indptr_t, cols_t, values_t, states.new_empty(size))
    return states.new_empty(steps, batch, size)


class SparseBlockRecurrence(torch.autograd.Function):
    """The recurrence over the kept entries of ``W_s`` only (CPU, fp32, one map).

    ``projected [B, T, R], weight_s [R, R] -> (y [B, T, n_y], s_{T-1} [B, R])``, with ``W_s`` read
    at the entries of ``pattern`` (its mask) and ``pattern_t`` (the same entries, transposed). Per
    step the forward is a sparse product ``s_{t-1} W_s^T`` plus ``p_t``; the backward forms
    ``ds_{t-1} = da_t W_s`` over the transposed pattern, and the gradient of ``W_s`` at kept entries
    only, as one sampled product over all steps (0 off the pattern).
    """

    @staticmethod
    def forward(ctx, projected, weight_s, pattern, pattern_t, h: int, activation: str):
        values = pattern.gather(weight_s.detach())  # kept entries in CSR order
        states = sparse_recurrence_forward(
            projected.contiguous(), pattern.indptr, pattern.cols, values, h, activation
        )
        ctx.save_for_backward(states, weight_s)
        ctx.pattern, ctx.pattern_t, ctx.h, ctx.activation = pattern, pattern_t, h, activation
        ctx.set_materialize_grads(False)
        return torch.movedim(states[1:, :, h:], 0, 1), states[-1]

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor | None, grad_final: torch.Tensor | None):
        states, weight_s = ctx.saved_tensors
        pattern, pattern_t = ctx.pattern, ctx.pattern_t
        batch, size = states.shape[1:]
        values_t = pattern_t.gather(weight_s.detach().t())  # W_s^T's kept entries
        if grad_y is None:
            grad_y = states.new_zeros(batch, states.shape[0] - 1, size - ctx.h)
        grad_y = grad_y.float().contiguous()
        grad_a = sparse_recurrence_backward(
            states, grad_y, pattern_t.indptr, pattern_t.cols, values_t, ctx.h, ctx.activation
        )
        if grad_final is not None:  # the map as masked dense: entries off the pattern read as 0
            masked = pattern.scatter(pattern.gather(weight_s.detach()))
            grad_a = grad_a + _final_state_gradient(states, grad_final, ctx.h, ctx.activation, masked)
        # dW_s[r, c] = sum over t >= 1 and the batch of da_t[n, r] s_{t-1}[n, c], at kept entries
        n = (states.shape[0] - 2) * batch  # T - 1 steps
        if n:
            s_tiles = sparse_ops.tiles(states[1:-1].reshape(n, size))
            kept = sparse_ops.kept_gradient(grad_a[1:].reshape(n, size), s_tiles, n, pattern)
            grad_w = pattern.scatter(kept)
        else:
            grad_w = states.new_zeros(size, size)
        grad_projected = torch.movedim(grad_a, 0, 1) if ctx.needs_input_grad[0] else None
        return grad_projected, grad_w, None, None, None, None


def sparse_block_recurrence(projected, weight_s, pattern, pattern_t, h: int, activation: str):
    """``(y [B, T, n_y], final state [B, R])`` of the recurrence over ``W_s``'s kept entries (see
    :class:`SparseBlockRecurrence`):
    ``pattern`` = ``SparsePattern.from_mask(mask_s)``, ``pattern_t`` = the same of ``mask_s.t()``."""
    return SparseBlockRecurrence.apply(projected, weight_s, pattern, pattern_t, h, activation)
