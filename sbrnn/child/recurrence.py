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
