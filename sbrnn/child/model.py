"""The sparse block RNN and its equal-budget baselines, as torch modules.

:class:`SparseBlockRNN` computes the map of :mod:`sbrnn.child.weight_space` in a fused form. The six
blocks live in two weight matrices with one mask buffer each:

    weight_x  [h + n_y, n_x]         = [W_hx; W_yx]               (mask_x)
    weight_s  [h + n_y, h + n_y]     = [W_hh, W_hy; W_yh, W_yy]   (mask_s)
    bias      [h + n_y]              = [b_h; b_y]                 (dense, not masked)

so the input projection of all ``T`` steps is one matmul ``[B, T, n_x] -> [B, T, h + n_y]`` and
each step is one matmul over the state ``s_{t-1} = [h_{t-1}; y_{t-1}]``. The x columns feed only
the projection; no weights are spent on rows for x (unlike a square ``(n_x+h+n_y)^2`` map).

The x column, the largest map (RAD: ``n_x = 2,500``) and mostly dropped at useful densities, is
stored compactly: its parameter is ``values_x [nnz]``, the kept entries in row-major (CSR) order of
``mask_x``, and :attr:`SparseBlockRNN.weight_x` is the dense ``[h + n_y, n_x]`` formed from them
(zeros off the mask, differentiable). So the optimizer, its moments and the gradient hold kept
entries only: Adam over the dense x column would stream every dropped entry's weight, gradient
and two moments each step (at the balanced RAD configuration about 90% of them). State dicts
hold ``values_x``; one holding a dense ``weight_x`` instead (written before the x column was
stored compactly, or a population's child) loads too.

Masks: every entry of block ``ij`` is kept independently with probability ``d_ij`` (the authors'
draw), so realised counts scatter binomially around the expected ``rows * cols * d_ij``;
:meth:`SparseBlockRNN.trainable_counts` reports the realised ones. Kept entries start at
``mu_ij + sigma_ij * N(0, 1)``; biases start at 0. A dropped entry of the x column is not a
parameter at all (see below); the state map is used as ``weight_s * mask_s``, so a dropped entry
there contributes nothing and its gradient is exactly 0; it starts at 0.0 and Adam (whose update
is 0 where every gradient so far was 0) leaves it at 0.0 for good.

Sparse products (:mod:`sbrnn.child.sparse_ops`, :mod:`sbrnn.child.recurrence`): when the x
column ``[W_hx; W_yx]`` keeps at most :data:`SPARSE_X_MAX_DENSITY` of its entries (and has at least
:data:`SPARSE_X_MIN_ENTRIES`), the input projection runs over its kept entries only (a sparse
forward product and a weight gradient at kept entries), on the CPU in fp32 when the input needs no
gradient; likewise the state map ``W_s`` (``[h + n_y, h + n_y]``) at most
:data:`SPARSE_S_MAX_DENSITY` dense with at least :data:`SPARSE_S_MIN_ENTRIES` entries runs the
recurrence over its kept entries. ``path`` chooses: ``auto`` (those rules), ``dense`` (masked-dense
products always) or ``sparse`` (sparse wherever a map drops entries). Parameters, buffers and
results are the same either way, within fp32 rounding.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TypeAlias

import torch
import torch.nn.functional as F
from torch import nn

from sbrnn.child import kernels, sparse_ops
from sbrnn.child.config import RunConfig
from sbrnn.child.recurrence import block_recurrence, sparse_block_recurrence
from sbrnn.child.weight_space import (
    BLOCKS,
    SparseBlockSpec,
    balance,
    grid_blocks,
    hidden_from_budget,
    lstm_hidden,
    lstm_weights,
    uniform_grid,
)
from sbrnn.errors import SbrnnError
from sbrnn.vocabulary import ACTIVATIONS, check_choice

ACTIVATION_FUNCTIONS = {"relu": torch.relu, "tanh": torch.tanh}
"""The function of each of :data:`sbrnn.vocabulary.ACTIVATIONS`."""
PATHS = ("auto", "dense", "sparse")

SPARSE_X_MAX_DENSITY = 0.4
SPARSE_X_MIN_ENTRIES = 65_536
"""``auto`` projects the x column sparsely when its expected density is at most
:data:`SPARSE_X_MAX_DENSITY` and it has at least :data:`SPARSE_X_MIN_ENTRIES` entries
(``(h + n_y) n_x``): above the one or below the other the masked-dense step measured as fast or
faster (the crossover in docs/benchmarks.md, made with ``benchmarks/child_throughput.py``)."""

SPARSE_S_MAX_DENSITY = 0.25
SPARSE_S_MIN_ENTRIES = 16_384
"""``auto`` runs the recurrence over the kept entries of ``W_s`` when its expected density is at
most :data:`SPARSE_S_MAX_DENSITY` and it has at least :data:`SPARSE_S_MIN_ENTRIES` entries
(``(h + n_y)^2``), by the crossover in docs/benchmarks.md."""


class SparseBlockRNN(nn.Module):
    """A sparse block RNN: ``[B, T, n_x] -> [B, T, n_y]`` (``y_t`` for every step).

    ``h_t = act(W_hx x_t + W_hh h_{t-1} + W_hy y_{t-1} + b_h)``,
    ``y_t = W_yx x_t + W_yh h_{t-1} + W_yy y_{t-1} + b_y``, with ``h_0 = y_0 = 0``.

    Args:
        spec: sizes, densities, init means and stds of the six blocks.
        activation: ``relu`` (the authors' code) or ``tanh``, applied to ``h``.
        generator: draws the masks and the initial weights (in the order of
            :data:`~sbrnn.child.weight_space.BLOCKS`, mask then values per block); None = seed 0.
        path: ``auto``, ``dense`` or ``sparse``: how the x column and the state map are multiplied.
    """

    # Set in __init__: the mask buffers (nn.Module's __getattr__ types them as Tensor | Module) and
    # the activation function.
    mask_x: torch.Tensor
    mask_s: torch.Tensor
    _act: Callable[[torch.Tensor], torch.Tensor]

    def __init__(
        self,
        spec: SparseBlockSpec,
        activation: str = "relu",
        generator: torch.Generator | None = None,
        path: str = "auto",
    ) -> None:
        super().__init__()
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("path", path, PATHS)
        self.path = path
        self._patterns: dict[str, tuple[tuple[int, int], sparse_ops.SparsePattern]] = {}
        self.spec = spec
        self.activation = activation
        self._act = ACTIVATION_FUNCTIONS[activation]
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        h, n_x, n_y = spec.h, spec.n_x, spec.n_y
        weight_x = torch.zeros(h + n_y, n_x)
        weight_s = torch.zeros(h + n_y, h + n_y)
        mask_x = torch.zeros_like(weight_x)
        mask_s = torch.zeros_like(weight_s)
        means, stds, densities = grid_blocks(spec.means), grid_blocks(spec.stds), grid_blocks(spec.densities)
        for block in BLOCKS:
            rows, cols = self._slices(block)
            weight, mask = (weight_x, mask_x) if block[1] == "x" else (weight_s, mask_s)
            shape = weight[rows, cols].shape
            keep = (torch.rand(shape, generator=g) < densities[block]).float()
            values = means[block] + stds[block] * torch.randn(shape, generator=g)
            mask[rows, cols] = keep
            weight[rows, cols] = values * keep
        self.register_buffer("mask_x", mask_x)
        self._x_layout = self._pattern("mask_x")  # the kept entries values_x holds, in its order
        self.values_x = nn.Parameter(self.kept_x(weight_x))
        self.weight_s = nn.Parameter(weight_s)
        self.bias = nn.Parameter(torch.zeros(h + n_y))
        self.register_buffer("mask_s", mask_s)

    def _slices(self, block: str) -> tuple[slice, slice]:
        """Rows and columns of ``block`` inside ``weight_x`` (x column) or ``weight_s``."""
        h = self.spec.h
        rows = slice(0, h) if block[0] == "h" else slice(h, None)
        cols = {"x": slice(None), "h": slice(0, h), "y": slice(h, None)}[block[1]]
        return rows, cols

    @property
    def n_x(self) -> int:
        return self.spec.n_x

    @property
    def n_y(self) -> int:
        return self.spec.n_y

    @property
    def hidden(self) -> int:
        return self.spec.h

    @property
    def weight_x(self) -> torch.Tensor:
        """The x column ``[W_hx; W_yx]`` as a dense ``[h + n_y, n_x]`` tensor: ``values_x`` at the
        kept entries of ``mask_x``, 0 elsewhere; gradients flow back into ``values_x``."""
        pattern = self._x_pattern()
        if pattern.nnz == self.mask_x.numel():  # every entry kept: the values are the matrix
            return self.values_x.view(self.mask_x.shape)
        return pattern.scatter(self.values_x)

    def kept_x(self, dense: torch.Tensor) -> torch.Tensor:
        """The entries of ``dense [h + n_y, n_x]`` (shaped like ``mask_x``) at the kept entries of
        ``mask_x``, in the order of ``values_x``: ``[nnz]``."""
        return self._x_pattern().gather(dense)

    def _x_pattern(self) -> sparse_ops.SparsePattern:
        """The kept entries of ``mask_x``, with ``values_x`` laid out on them: where the mask changed
        in place since (an in-place op on the buffer, :meth:`set_masks`), the values move to the
        new entries (dropped ones go, new ones start at 0)."""
        pattern = self._pattern("mask_x")
        layout = self._x_layout
        if pattern is not layout:
            if not torch.equal(pattern.flat, layout.flat):
                self.values_x.data = pattern.gather(layout.scatter(self.values_x.detach()))
            self._x_layout = pattern
        return pattern

    def masked_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The effective ``(weight_x, weight_s * mask_s)`` (``weight_x`` is 0 off its mask)."""
        return self.weight_x, self.masked_s()

    def masked_s(self) -> torch.Tensor:
        """``weight_s * mask_s`` (``weight_s`` itself where the mask keeps every entry)."""
        if self._pattern("mask_s").nnz == self.mask_s.numel():
            return self.weight_s
        return self.weight_s * self.mask_s

    def block(self, name: str) -> torch.Tensor:
        """The effective (masked) weights of one block, e.g. ``block("hx")`` is ``[h, n_x]``."""
        if name not in BLOCKS:
            raise SbrnnError(f"unknown block {name!r}; allowed: {', '.join(BLOCKS)}")
        rows, cols = self._slices(name)
        weight_x, weight_s = self.masked_weights()
        return (weight_x if name[1] == "x" else weight_s)[rows, cols]

    def block_mask(self, name: str) -> torch.Tensor:
        """The 0/1 mask of one block, shaped like :meth:`block`."""
        rows, cols = self._slices(name)
        return (self.mask_x if name[1] == "x" else self.mask_s)[rows, cols]

    def trainable_counts(self) -> dict[str, int]:
        """Realised trainable weights per block (mask nonzeros), keyed as in ``BLOCKS``."""
        return {b: int(self.block_mask(b).count_nonzero()) for b in BLOCKS}

    @property
    def trainable_total(self) -> int:
        """Trainable weights held against the budget: all mask nonzeros (biases excluded)."""
        return sum(self.trainable_counts().values())

    @property
    def bias_count(self) -> int:
        """Dense trainable biases, ``h + n_y``, outside the budget."""
        return self.bias.numel()

    @property
    def x_density(self) -> float:
        """Expected kept fraction of the x column ``[W_hx; W_yx]``."""
        h, n_y = self.spec.h, self.spec.n_y
        return (h * self.spec.density("hx") + n_y * self.spec.density("yx")) / (h + n_y)

    @property
    def s_density(self) -> float:
        """Expected kept fraction of the state map ``W_s`` (``[h + n_y, h + n_y]``)."""
        h, n_y, d = self.spec.h, self.spec.n_y, self.spec.density
        return (h * h * d("hh") + h * n_y * (d("hy") + d("yh")) + n_y * n_y * d("yy")) / (h + n_y) ** 2

    def _sparse_allowed(
        self, density: float, weight: torch.Tensor, max_density: float, min_entries: int
    ) -> bool:
        """Whether a map of expected ``density`` (``weight``: its parameter or mask) runs sparse
        under ``path`` (CPU, fp32, kernels built)."""
        if self.path == "dense" or weight.dtype != torch.float32 or weight.device.type != "cpu":
            return False
        if self.path == "sparse":
            wanted = density < 1.0
        else:
            wanted = density <= max_density and weight.numel() >= min_entries
        return wanted and kernels.library() is not None

    def sparse_x(self, x: torch.Tensor | None = None) -> bool:
        """Whether the x column is projected sparsely (for input ``x``, when given): see ``path``."""
        if x is not None and (x.requires_grad or x.device.type != "cpu" or x.dtype != torch.float32):
            return False
        return self._sparse_allowed(self.x_density, self.mask_x, SPARSE_X_MAX_DENSITY, SPARSE_X_MIN_ENTRIES)

    def sparse_s(self) -> bool:
        """Whether the recurrence runs over the kept entries of ``W_s`` (outside autocast): see ``path``."""
        return self._sparse_allowed(self.s_density, self.weight_s, SPARSE_S_MAX_DENSITY, SPARSE_S_MIN_ENTRIES)

    def kernel_path(self, device: torch.device | str = "cpu", precision: str = "fp32") -> str:
        """The products a training step of this model runs on ``device`` at ``precision``, as run
        records name them: ``<x>+<recurrence>`` with ``x`` one of ``sparse-x`` (kept entries, compiled
        kernels) or ``dense-x`` (masked-dense matmul), and the recurrence one of
        ``sparse-recurrence``, ``compiled-recurrence`` (all steps in one compiled call) or
        ``torch-recurrence`` (torch ops per step: another device, bf16, or no kernels); `` [portable]``
        when the kernels are the portable build."""
        cpu_fp32 = torch.device(device).type == "cpu" and precision == "fp32"
        x = "sparse-x" if cpu_fp32 and self.sparse_x() else "dense-x"
        if not cpu_fp32 or kernels.library() is None:
            recurrence = "torch-recurrence"
        else:
            recurrence = "sparse-recurrence" if self.sparse_s() else "compiled-recurrence"
        portable = cpu_fp32 and kernels.library() is not None and kernels.variant() == "portable"
        return f"{x}+{recurrence}" + (" [portable]" if portable else "")

    def set_masks(self, mask_x: torch.Tensor, mask_s: torch.Tensor) -> None:
        """Replace both masks (0/1, shaped like ``mask_x`` and ``mask_s``) and zero the weights they
        drop (entries newly kept start at 0). The way to change masks: the sparse paths cache each
        mask's kept entries, keyed by its storage and version counter, which in-place torch ops,
        ``load_state_dict`` and this method advance but a write through ``mask.data`` does not (it
        would leave a stale pattern and ``values_x`` laid out on it). ``values_x`` keeps its
        identity but changes size with the kept count: an optimizer made before holds moments of
        the old size."""
        with torch.no_grad():
            for name, new in (("mask_x", mask_x), ("mask_s", mask_s)):
                current = getattr(self, name)
                if tuple(new.shape) != tuple(current.shape):
                    raise SbrnnError(
                        f"{name} of shape {tuple(new.shape)} does not fit; allowed: {tuple(current.shape)}"
                    )
            for name, new in (("mask_x", mask_x), ("mask_s", mask_s)):
                current = getattr(self, name)
                current.copy_((new != 0).to(current.dtype))
            self._x_pattern()  # values_x onto the new kept entries
            self.weight_s.mul_(self.mask_s)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, *args) -> None:
        """Loads ``values_x`` sized by the incoming ``mask_x``, or takes a dense ``weight_x``
        (older state dicts, a population's child) at that mask's kept entries."""
        mask = state_dict.get(prefix + "mask_x")
        dense = state_dict.pop(prefix + "weight_x", None)
        if isinstance(mask, torch.Tensor) and tuple(mask.shape) == tuple(self.mask_x.shape):
            flat = (mask.reshape(-1) != 0).nonzero().squeeze(1)
            if dense is not None and prefix + "values_x" not in state_dict:
                state_dict[prefix + "values_x"] = dense.reshape(-1)[flat.to(dense.device)]
            if flat.numel() != self.values_x.numel():
                self.values_x.data = self.values_x.new_empty(flat.numel())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, *args)
        self._x_layout = self._pattern("mask_x")  # the values came laid out on the loaded mask

    def _pattern(self, name: str) -> sparse_ops.SparsePattern:
        """The kept entries of buffer ``name`` (``mask_x``, ``mask_s``, or ``mask_s.t`` for its
        transpose), cached until the mask changes (see :meth:`set_masks` for what counts as a change)."""
        mask = getattr(self, name.removesuffix(".t"))
        key = (mask.data_ptr(), mask._version)
        cached = self._patterns.get(name)
        if cached is None or cached[0] != key:
            cached = (key, sparse_ops.SparsePattern.from_mask(mask.t() if name.endswith(".t") else mask))
            self._patterns[name] = cached
        return cached[1]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The input projection of all steps, ``x [B, T, n_x] -> [B, T, h + n_y]`` (biases added)."""
        if not self.sparse_x(x):
            return F.linear(x, self.weight_x, self.bias)  # one matmul for all steps
        return sparse_ops.sparse_x_product(x, self.values_x, self._x_pattern(), self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, n_x] -> y [B, T, n_y]`` (from the zero state)."""
        return self.forward_with_state(x)[0]

    def forward_with_state(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, T, n_x]`` from ``state`` ``[B, h + n_y]`` (``[h; y]`` before the first step; None =
        0) -> ``(y [B, T, n_y], final state [B, h + n_y])``. Gradients flow through both outputs and
        into ``state`` (a gradient on the final state costs one more backward pass in torch ops)."""
        batch, steps, _ = x.shape
        h = self.spec.h
        projected = self.project(x)  # [B, T, h + n_y]
        if state is not None:  # a_0 = p_0 + s_{-1} W_s^T: the rest of the recurrence starts at 0
            expected = (batch, h + self.spec.n_y)
            if tuple(state.shape) != expected:
                raise SbrnnError(f"state of shape {tuple(state.shape)} does not fit; allowed: {expected}")
            first = projected[:, :1] + F.linear(state, self.masked_s()).unsqueeze(1)
            projected = torch.cat((first, projected[:, 1:]), dim=1)
        if not torch.is_autocast_enabled(x.device.type):  # one autograd node for the whole loop
            if self.sparse_s():
                return sparse_block_recurrence(
                    projected,
                    self.weight_s,
                    self._pattern("mask_s"),
                    self._pattern("mask_s.t"),
                    h,
                    self.activation,
                )
            return block_recurrence(projected, self.masked_s(), h, self.activation)
        weight_s_t = self.masked_s().t()
        current = self.init_state(batch)
        outputs = []
        for t in range(steps):
            pre = torch.addmm(projected[:, t], current, weight_s_t)
            current = torch.cat((self._act(pre[:, :h]), pre[:, h:]), dim=1)
            outputs.append(pre[:, h:])
        return torch.stack(outputs, dim=1), current

    def init_state(self, batch_size: int) -> torch.Tensor:
        """The state before the first step, ``[h_0; y_0] = 0``: ``[B, h + n_y]``."""
        return self.bias.new_zeros(batch_size, self.spec.h + self.spec.n_y)

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``x_t [B, n_x]``, state ``[B, h + n_y]`` -> ``(y_t [B, n_y], next state)``."""
        weight_x, weight_s = self.masked_weights()
        pre = F.linear(x_t, weight_x, self.bias) + F.linear(state, weight_s)
        h = self.spec.h
        y_t = pre[:, h:]
        return y_t, torch.cat((self._act(pre[:, :h]), y_t), dim=1)

    def extra_repr(self) -> str:
        counts = self.trainable_counts()
        return (
            f"n_x={self.n_x}, h={self.hidden}, n_y={self.n_y}, activation={self.activation}, "
            f"trainable={sum(counts.values())} + {self.bias_count} biases"
        )


class LSTMBaseline(nn.Module):
    """The LSTM baseline with an output projection: ``[B, T, n_x] -> [B, T, n_y]``.

    The cell of ``torch.nn.LSTM(n_x, hidden, proj_size=n_y)``, with the same parameter names,
    shapes and gate order (i, f, g, o)::

        gates = W_ih x_t + b_ih + W_hh r_{t-1} + b_hh
        c_t = f * c_{t-1} + i * g,   r_t = W_hr (o * tanh(c_t)),   y_t = r_t

    written out here because torch's module refuses ``proj_size >= hidden``, which is what an
    equal budget gives on wide inputs (RAD at 100k: ``hidden = n_y = 10``). Its output at step
    ``t`` is ``r_t`` (no one-step lag). All parameters start uniform in ``[-1/sqrt(hidden),
    1/sqrt(hidden)]`` (torch's scheme) drawn from ``generator`` (None = seed 0). Its budget count is
    the method's ``4h(n_x + p) + 8h + p*h`` (``p = n_y``): unlike the block archs, the ``8h``
    biases are inside it (:attr:`bias_count` shows them apart).
    """

    # Parameters registered by name in __init__ (nn.Module's __getattr__ types them as Tensor | Module).
    weight_ih_l0: nn.Parameter
    weight_hh_l0: nn.Parameter
    bias_ih_l0: nn.Parameter
    bias_hh_l0: nn.Parameter
    weight_hr_l0: nn.Parameter

    def __init__(self, n_x: int, n_y: int, hidden: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.n_x, self.n_y, self.hidden = n_x, n_y, hidden
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        bound = 1.0 / math.sqrt(hidden)
        shapes = {
            "weight_ih_l0": (4 * hidden, n_x),
            "weight_hh_l0": (4 * hidden, n_y),
            "bias_ih_l0": (4 * hidden,),
            "bias_hh_l0": (4 * hidden,),
            "weight_hr_l0": (n_y, hidden),
        }
        for name, shape in shapes.items():
            self.register_parameter(name, nn.Parameter(torch.rand(shape, generator=g) * 2 * bound - bound))

    def kernel_path(self, device: torch.device | str = "cpu", precision: str = "fp32") -> str:
        """``torch``: the LSTM runs in torch ops everywhere."""
        return "torch"

    def trainable_counts(self) -> dict[str, int]:
        """No block grid: empty."""
        return {}

    @property
    def trainable_total(self) -> int:
        """Parameters held against the budget, biases included (method section 8)."""
        return lstm_weights(self.n_x, self.n_y, self.hidden)

    @property
    def bias_count(self) -> int:
        """The ``8 * hidden`` biases (``b_ih``, ``b_hh``), counted inside :attr:`trainable_total`."""
        return self.bias_ih_l0.numel() + self.bias_hh_l0.numel()

    def _cell(self, gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``gates [B, 4 hidden]``, ``c [B, hidden]`` -> ``(r_t [B, n_y], c_t)``."""
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return F.linear(torch.sigmoid(o) * torch.tanh(c), self.weight_hr_l0), c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, n_x] -> y [B, T, n_y]``: torch's own LSTM op (``aten::lstm``, its projection
        included) where it takes the shapes (``n_y < hidden``), else :meth:`stepwise`. The op runs
        the same cell in one call, with its backward in C++: at T = 200 a forward and backward took
        a sixth to a tenth of the step-by-step form's time (adding-200 at 7,600: hidden 361,
        batch 16; docs/benchmarks.md)."""
        if self.n_y >= self.hidden:  # torch refuses proj_size >= hidden_size
            return self.stepwise(x)
        r, c = self.init_state(x.shape[0])
        weights = (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0, self.weight_hr_l0)
        with warnings.catch_warnings():  # CPU: oneDNN has no projection, torch's own loop runs instead
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
            y, _, _ = torch.lstm(x, (r[None], c[None]), weights, True, 1, 0.0, self.training, False, True)
        return y

    def stepwise(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` one step at a time in torch ops (any ``hidden``)."""
        projected = F.linear(x, self.weight_ih_l0, self.bias_ih_l0 + self.bias_hh_l0)  # [B, T, 4 hidden]
        r, c = self.init_state(x.shape[0])
        weight_hh_t = self.weight_hh_l0.t()
        outputs = []
        for t in range(x.shape[1]):
            r, c = self._cell(torch.addmm(projected[:, t], r, weight_hh_t), c)
            outputs.append(r)
        return torch.stack(outputs, dim=1)

    def init_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r_0 [B, n_y], c_0 [B, hidden])``, zeros."""
        ref = self.weight_ih_l0
        return ref.new_zeros(batch_size, self.n_y), ref.new_zeros(batch_size, self.hidden)

    def step(
        self, x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One step: ``x_t [B, n_x]``, state ``(r, c)`` -> ``(y_t [B, n_y], next state)``."""
        r, c = state
        gates = F.linear(x_t, self.weight_ih_l0, self.bias_ih_l0 + self.bias_hh_l0) + F.linear(
            r, self.weight_hh_l0
        )
        r, c = self._cell(gates, c)
        return r, (r, c)


ChildModel: TypeAlias = "SparseBlockRNN | LSTMBaseline"
"""A child model as :func:`build_model` makes it."""


def _budget(config: RunConfig) -> float:
    """The budget of a config that gives no hidden size (RunConfig holds exactly one of the two)."""
    assert config.budget is not None, "RunConfig gives exactly one of budget and hidden"
    return config.budget


def resolve(config: RunConfig, n_x: int, n_y: int) -> tuple[SparseBlockSpec | None, int]:
    """The block spec (None for ``lstm``) and hidden size a config asks for; no torch work.

    ``sbrnn`` without densities is the a-priori balanced configuration (:func:`balance`) at the
    config's budget. Raises :class:`SbrnnError` for a budget too small for the task's dims.
    """
    if config.arch == "lstm":
        hidden = config.hidden if config.hidden is not None else lstm_hidden(n_x, n_y, _budget(config))
        return None, hidden
    if config.arch == "dense":
        densities = uniform_grid(1.0)
    elif config.arch == "uniform":
        densities = uniform_grid(config.uniform_density)
    elif config.densities is not None:
        densities = config.densities
    elif config.budget is None:
        raise SbrnnError("arch sbrnn without densities is balanced from a budget; give a budget or densities")
    else:
        densities = balance(n_x, n_y, config.budget).spec.densities
    hidden = (
        config.hidden
        if config.hidden is not None
        else hidden_from_budget(n_x, n_y, _budget(config), densities)
    )
    options = {k: getattr(config, k) for k in ("means", "stds") if getattr(config, k) is not None}
    return SparseBlockSpec(n_x, n_y, hidden, densities, **options), hidden


def build_model(
    config: RunConfig, n_x: int, n_y: int, path: str = "auto"
) -> tuple[ChildModel, SparseBlockSpec | None]:
    """The module a config asks for, its masks and weights drawn from ``config.seed``.

    Returns ``(module, spec)``; ``spec`` is None for the LSTM baseline. ``path`` goes to
    :class:`SparseBlockRNN`.
    """
    spec, hidden = resolve(config, n_x, n_y)
    generator = torch.Generator().manual_seed(config.seed)
    if spec is None:
        return LSTMBaseline(n_x, n_y, hidden, generator=generator), None
    return SparseBlockRNN(spec, activation=config.activation, generator=generator, path=path), spec
