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


class BlockRecurrence(torch.autograd.Function):
    """``projected [B, T, R], weight_s [R, R] -> y [B, T, n_y]`` (``R = h + n_y``)."""

    @staticmethod
    def forward(ctx, projected: torch.Tensor, weight_s: torch.Tensor, h: int, activation: str):
        batch, steps, size = projected.shape
        states = projected.new_zeros(steps + 1, batch, size)  # states[t + 1] = s_t; states[0] = s_{-1} = 0
        weight_t = weight_s.t()
        for t in range(steps):
            a = torch.addmm(projected[:, t], states[t], weight_t)
            nxt = states[t + 1]
            if activation == "relu":
                torch.clamp_min(a[:, :h], 0.0, out=nxt[:, :h])
            else:
                torch.tanh(a[:, :h], out=nxt[:, :h])
            nxt[:, h:] = a[:, h:]
        ctx.save_for_backward(states, weight_s)
        ctx.h, ctx.activation = h, activation
        return states[1:, :, h:].transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        states, weight_s = ctx.saved_tensors
        h = ctx.h
        steps, batch, size = states.shape[0] - 1, states.shape[1], states.shape[2]
        grad_a = states.new_empty(steps, batch, size)
        grad_s = states.new_zeros(batch, size)  # gradient reaching s_t from step t + 1
        for t in range(steps - 1, -1, -1):
            s = states[t + 1]
            g = grad_a[t]
            if ctx.activation == "relu":
                torch.mul(grad_s[:, :h], s[:, :h] > 0, out=g[:, :h])
            else:
                torch.mul(grad_s[:, :h], 1 - s[:, :h] * s[:, :h], out=g[:, :h])
            torch.add(grad_s[:, h:], grad_y[:, t], out=g[:, h:])
            if t:
                grad_s = g @ weight_s
        grad_w = grad_a.reshape(steps * batch, size).t() @ states[:-1].reshape(steps * batch, size)
        grad_projected = grad_a.transpose(0, 1) if ctx.needs_input_grad[0] else None
        return grad_projected, grad_w, None, None


def block_recurrence(projected: torch.Tensor, weight_s: torch.Tensor, h: int, activation: str):
    """``y [B, T, n_y]`` of the recurrence (see the module docstring); ``activation`` relu or tanh."""
    return BlockRecurrence.apply(projected, weight_s, h, activation)
