"""The child as a drop-in recurrent layer: batch-first sequences in, outputs and final state out.

:class:`SparseRNN` wraps :class:`~sbrnn.child.model.SparseBlockRNN` with the interface of
``torch.nn.RNN(batch_first=True)`` / ``torch.nn.LSTM``: ``rnn(x)`` or ``rnn(x, state)`` returns
``(y, state)``. It is built from a budget of trainable weights (biases excluded) and block
densities (the paper's a-priori balanced ones by default), or from a parent's recommendation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sbrnn.child.model import SparseBlockRNN
from sbrnn.child.weight_space import Grid, SparseBlockSpec, as_grid, balance, parse_grid
from sbrnn.errors import SbrnnError


def _grid(value: Any, name: str) -> Grid | None:
    """A grid from ``value``: None, one number, ``"hx,hh,hy/yx,yh,yy"`` text or a 2x3 nesting."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_grid(value, name)
    if isinstance(value, int | float):
        return as_grid(((value,) * 3,) * 2, name)
    return as_grid(value, name)


class SparseRNN(nn.Module):
    """A sparse block RNN layer: ``x [B, T, input_size] -> (y [B, T, output_size], state [B, H])``.

    ``H = hidden_size + output_size``: the state is ``[h; y]`` after the last step (the map reads
    ``y_{t-1}`` as well as ``h_{t-1}``). Pass it back as ``state`` to continue a sequence; None
    starts from zeros, as ``nn.RNN`` does.

    Args:
        input_size, output_size: sizes of ``x_t`` and ``y_t``.
        budget: trainable weights of the six blocks (biases excluded); sets ``hidden_size``.
        hidden_size: instead of ``budget``.
        densities: the blocks' densities (a 2x3 grid, ``"hx,hh,hy/yx,yh,yy"`` text or one number);
            None = the a-priori balanced densities at ``budget``.
        means, stds: init mean and std of kept entries (same forms; None = 0 and 0.05).
        activation: ``relu`` (the authors') or ``tanh``.
        seed: draws the masks and the initial weights.
        path: ``auto``, ``dense`` or ``sparse`` (see :class:`SparseBlockRNN`).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        budget: float | None = None,
        hidden_size: int | None = None,
        densities: Any = None,
        means: Any = None,
        stds: Any = None,
        activation: str = "relu",
        seed: int = 0,
        path: str = "auto",
    ) -> None:
        super().__init__()
        if (budget is None) == (hidden_size is None):
            raise SbrnnError("give exactly one of budget and hidden_size")
        grid = _grid(densities, "densities")
        if grid is None:
            if budget is None:
                raise SbrnnError("the balanced densities follow from a budget; give a budget or densities")
            grid = balance(input_size, output_size, budget).spec.densities
        init = {
            k: g
            for k, g in (("means", _grid(means, "means")), ("stds", _grid(stds, "stds")))
            if g is not None
        }
        if hidden_size is not None:
            spec = SparseBlockSpec(input_size, output_size, hidden_size, grid, **init)
        else:
            assert budget is not None
            spec = SparseBlockSpec.from_budget(input_size, output_size, budget, grid, **init)
        self.core = SparseBlockRNN(spec, activation, torch.Generator().manual_seed(seed), path)

    @classmethod
    def from_recommendation(cls, scored: Any, input_size: int, output_size: int, seed: int = 0) -> SparseRNN:
        """The layer of a recommended configuration (a ``Scored`` of :func:`sbrnn.recommend`'s
        ``top``), at its budget; a recommended LSTM or uniform baseline is not a block layer."""
        if scored.arch not in ("sbrnn", "dense", "uniform"):
            raise SbrnnError(
                f"a recommended {scored.arch!r} is not a sparse block layer; allowed: sbrnn, dense"
            )
        return cls(
            input_size,
            output_size,
            budget=scored.budget,
            densities=scored.densities,
            means=scored.means,
            stds=scored.stds,
            seed=seed,
        )

    @property
    def spec(self) -> SparseBlockSpec:
        """The weight space: sizes, densities, init means and stds."""
        return self.core.spec

    @property
    def hidden_size(self) -> int:
        return self.core.spec.h

    @property
    def hidden_proportion(self) -> float:
        """``T_hh / (T_hx + T_hh + T_hy)`` of the realised masks (eq. 12)."""
        counts = self.core.trainable_counts()
        row = counts["hx"] + counts["hh"] + counts["hy"]
        return counts["hh"] / row if row else 0.0

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, T, input_size]``, ``state [B, hidden_size + output_size]`` or None -> ``(y, state)``."""
        return self.core.forward_with_state(x, state)
