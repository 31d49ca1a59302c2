"""Population training: K children of one task trained together, one batched step for all.

A sweep trains many small children on the same data in the same order (one seed per sweep).
Trained one after another, each step pays the batch gather, the op dispatch of a short
recurrence and a thin input matmul K times. Here K :class:`SparseBlockRNN` children are stacked
into one :class:`SparseBlockPopulation`, padded to the largest ``h`` with zero masks (a padded
hidden unit has no weights and no bias, so it stays 0 under ReLU or tanh), and trained on a
shared batch: the input projection of all K is one matmul ``[B*T, n_x] x [n_x, K (H + n_y)]``
(or one sparse product over the stack's kept entries, by the rule of one child's sparse x path),
the recurrence one call for all K maps. The loss is the sum of the K per-child mean losses, so
each child's gradient is exactly its own. As in one child, the stacked x columns are stored as
their kept entries only (``values_x``, row-major over the ``[K (H + n_y), n_x]`` stack, so each
child's entries are one contiguous range). :class:`PopulationAdam` is torch's (fused) Adam update
per child: its own learning rate, moments and bias corrections, on its slices of the stack.

Each child keeps its own curves, best epoch (a copy of its best weights), early stopping and
divergence: a child that stops leaves the stack (and the stack shrinks to the largest ``h`` left)
while the others go on. The results equal training each config alone with
:func:`sbrnn.child.train.train_run` within fp32 rounding: same masks and initial weights (built
by the same :func:`~sbrnn.child.model.build_model`), same batches, same update rule.

Configs that cannot share a population (the LSTM baseline, or a different task, task options,
seed, batch size, precision or activation) are trained alone with ``train_run``. A record's
``wall_seconds`` is its share of the population's wall time, in proportion to the epochs it ran.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adam import adam

from sbrnn.child import kernels, sparse_ops
from sbrnn.child import train as trainer
from sbrnn.child.config import RunConfig
from sbrnn.child.model import (
    ACTIVATION_FUNCTIONS,
    SPARSE_X_MAX_DENSITY,
    SPARSE_X_MIN_ENTRIES,
    SparseBlockRNN,
    resolve,
)
from sbrnn.child.recurrence import block_recurrence
from sbrnn.datasets.registry import build_task, get_info
from sbrnn.datasets.task import Task
from sbrnn.errors import SbrnnError
from sbrnn.records import RunRecord


def _padded_rows(h: int, rows: int, n_y: int, device: torch.device) -> torch.Tensor:
    """Rows ``[0, h) + [rows, rows + n_y)`` of a stack padded to ``rows`` hidden units."""
    return torch.cat([torch.arange(h), rows + torch.arange(n_y)]).to(device)


class SparseBlockPopulation(nn.Module):
    """K sparse block RNNs of the same task: ``x [B, T, n_x] -> y [K, B, T, n_y]``.

    Child ``k`` (hidden size ``h_k``) occupies rows ``[0, h_k)`` and ``[H, H + n_y)`` of the
    padded ``[K, H + n_y, ...]`` stacks, ``H = max h_k``; everything else is masked to 0.

    Attributes:
        values_x: ``[nnz]`` the kept entries of the stacked x columns (row-major over
            ``mask_x``); weight_s: ``[K, H + n_y, H + n_y]``; bias: ``[K, H + n_y]`` (parameters),
            with 0/1 buffers ``mask_x`` (``[K, H + n_y, n_x]``), ``mask_s`` and ``mask_b`` shaped
            like the stacks they mask. :attr:`weight_x` is the dense ``[K, H + n_y, n_x]``.
    """

    # Registered in __init__ and keep (nn.Module's __getattr__ types them as Tensor | Module).
    values_x: nn.Parameter
    weight_s: nn.Parameter
    bias: nn.Parameter
    mask_x: torch.Tensor
    mask_s: torch.Tensor
    mask_b: torch.Tensor
    _act: Callable[[torch.Tensor], torch.Tensor]

    def __init__(self, models: Sequence[SparseBlockRNN]) -> None:
        super().__init__()
        if not models:
            raise SbrnnError("a population needs at least one model")
        first = models[0]
        for m in models:
            if not isinstance(m, SparseBlockRNN):
                raise SbrnnError(f"a population holds sparse block RNNs only, not {type(m).__name__}")
            if (m.n_x, m.n_y, m.activation) != (first.n_x, first.n_y, first.activation):
                raise SbrnnError("population models must share n_x, n_y and activation")
        self.n_x, self.n_y, self.activation = first.n_x, first.n_y, first.activation
        self._act = ACTIVATION_FUNCTIONS[self.activation]
        self.hidden = [m.hidden for m in models]
        size, rows = max(self.hidden) + self.n_y, max(self.hidden)
        k, n_x, ref = len(models), self.n_x, first.values_x
        stacks = {
            "weight_x": ref.new_zeros(k, size, n_x),
            "weight_s": ref.new_zeros(k, size, size),
            "bias": ref.new_zeros(k, size),
            "mask_x": ref.new_zeros(k, size, n_x),
            "mask_s": ref.new_zeros(k, size, size),
            "mask_b": ref.new_zeros(k, size),
        }
        with torch.no_grad():
            for i, m in enumerate(models):
                idx = _padded_rows(m.hidden, rows, self.n_y, ref.device)
                stacks["weight_x"][i, idx] = m.weight_x
                stacks["mask_x"][i, idx] = m.mask_x
                stacks["weight_s"][i, idx[:, None], idx[None, :]] = m.weight_s
                stacks["mask_s"][i, idx[:, None], idx[None, :]] = m.mask_s
                stacks["bias"][i, idx] = m.bias
                stacks["mask_b"][i, idx] = 1.0
        self.register_buffer("mask_x", stacks["mask_x"])
        self._layout = sparse_ops.SparsePattern.from_mask(self.mask_x.reshape(-1, n_x))
        self.values_x = nn.Parameter(self._layout.gather(stacks["weight_x"]))
        for name in ("weight_s", "bias"):
            self.register_parameter(name, nn.Parameter(stacks[name]))
        for name in ("mask_s", "mask_b"):
            self.register_buffer(name, stacks[name])

    @property
    def rows(self) -> int:
        """``H``, the padded hidden size."""
        return self.mask_x.shape[1] - self.n_y

    @property
    def size(self) -> int:
        """Children in the stack, ``K``."""
        return self.mask_x.shape[0]

    @property
    def weight_x(self) -> torch.Tensor:
        """The stacked x columns as a dense ``[K, H + n_y, n_x]``: ``values_x`` at the kept entries
        of ``mask_x``, 0 elsewhere (differentiable)."""
        return self._layout.scatter(self.values_x).view(self.mask_x.shape)

    def child_part(self, name: str, tensor: torch.Tensor, k: int) -> torch.Tensor:
        """Child ``k``'s part of a tensor shaped like parameter ``name`` (the parameter, its
        gradient or a moment): a contiguous view (its range of ``values_x``, else ``[k]``)."""
        if name != "values_x":
            return tensor[k]
        rows = self.mask_x.shape[1]
        indptr = self._layout.indptr
        return tensor[int(indptr[k * rows]) : int(indptr[(k + 1) * rows])]

    def x_pattern(self) -> sparse_ops.SparsePattern | None:
        """The kept entries of the stacked x columns ``[K (H + n_y), n_x]`` when the sparse x path
        applies to them (CPU, fp32, kernels built, :data:`~sbrnn.child.model.SPARSE_X_MAX_DENSITY`
        or less of at least :data:`~sbrnn.child.model.SPARSE_X_MIN_ENTRIES` entries, padding
        included), else None."""
        values = self.values_x
        if values.device.type != "cpu" or values.dtype != torch.float32 or kernels.library() is None:
            return None
        entries = self.mask_x.numel()
        dense = entries < SPARSE_X_MIN_ENTRIES or self._layout.nnz > SPARSE_X_MAX_DENSITY * entries
        return None if dense else self._layout

    def kernel_path(self, device: torch.device | str = "cpu", precision: str = "fp32") -> str:
        """As :meth:`SparseBlockRNN.kernel_path`, prefixed ``population:``; a stack's recurrence is
        the compiled call of K maps (no sparse recurrence)."""
        cpu_fp32 = torch.device(device).type == "cpu" and precision == "fp32"
        x = "sparse-x" if cpu_fp32 and self.x_pattern() is not None else "dense-x"
        compiled = cpu_fp32 and kernels.library() is not None
        portable = compiled and kernels.variant() == "portable"
        return f"population:{x}+{'compiled' if compiled else 'torch'}-recurrence" + (
            " [portable]" if portable else ""
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, n_x] -> y [K, B, T, n_y]``."""
        batch, steps, _ = x.shape
        k, size, rows = self.size, self.mask_x.shape[1], self.rows
        bias = (self.bias * self.mask_b).reshape(k * size)
        pattern = self.x_pattern() if not x.requires_grad and x.dtype == torch.float32 else None
        if pattern is not None:  # all children's kept x entries, one sparse product
            projected = sparse_ops.sparse_x_product(x, self.values_x, pattern, bias)
        else:  # [B, T, K (H + n_y)]: all children, all steps, one matmul
            projected = F.linear(x, self.weight_x.reshape(k * size, self.n_x), bias)
        projected = projected.view(batch, steps, k, size).permute(2, 0, 1, 3)  # [K, B, T, H + n_y]
        if not torch.is_autocast_enabled(x.device.type):  # the K recurrences as one autograd node
            return block_recurrence(projected, self.weight_s * self.mask_s, rows, self.activation)[0]
        weight_s_t = (self.weight_s * self.mask_s).transpose(1, 2)
        state = x.new_zeros(k, batch, size)
        outputs = []
        for t in range(steps):
            pre = torch.baddbmm(projected[:, :, t], state, weight_s_t)
            state = torch.cat((self._act(pre[..., :rows]), pre[..., rows:]), dim=2)
            outputs.append(pre[..., rows:])
        return torch.stack(outputs, dim=2)

    def child_state(self, i: int) -> dict[str, torch.Tensor]:
        """Child ``i``'s weights as a :class:`SparseBlockRNN` state dict (unpadded copies)."""
        idx = _padded_rows(self.hidden[i], self.rows, self.n_y, self.mask_x.device)
        return {
            "weight_x": self.weight_x.detach()[i, idx].clone(),
            "weight_s": self.weight_s[i][idx[:, None], idx[None, :]].detach().clone(),
            "bias": self.bias[i, idx].detach().clone(),
            "mask_x": self.mask_x[i, idx].clone(),
            "mask_s": self.mask_s[i][idx[:, None], idx[None, :]].clone(),
        }

    def keep(self, kept: Sequence[int], extra: Sequence[dict[str, torch.Tensor]] = ()) -> None:
        """Keep children ``kept`` (in that order) and shrink the padding to their largest ``h``.

        ``extra`` are dicts of tensors shaped like the parameters (optimizer moments, keyed by
        parameter name): they are cut the same way, in place of their entries.
        """
        device = self.mask_x.device
        index = torch.as_tensor(list(kept), dtype=torch.long, device=device)
        idx = _padded_rows(max(self.hidden[i] for i in kept), self.rows, self.n_y, device)
        old = self._layout

        def cut(name: str, t: torch.Tensor) -> torch.Tensor:
            t = t.index_select(0, index).index_select(1, idx)
            return t.index_select(2, idx).contiguous() if name.endswith("_s") else t.contiguous()

        def dense_x(values: torch.Tensor) -> torch.Tensor:  # [nnz] in the old layout -> [K, H + n_y, n_x]
            return old.scatter(values).view(self.mask_x.shape)

        with torch.no_grad():
            weights = {"values_x": dense_x(self.values_x), "weight_s": self.weight_s, "bias": self.bias}
            moments = [{n: dense_x(t) if n == "values_x" else t for n, t in state.items()} for state in extra]
            for name in ("mask_x", "mask_s", "mask_b"):
                setattr(self, name, cut(name, getattr(self, name)))
            new = self._layout = sparse_ops.SparsePattern.from_mask(self.mask_x.reshape(-1, self.n_x))

            def shrunk(name: str, t: torch.Tensor) -> torch.Tensor:
                return new.gather(cut(name, t)) if name == "values_x" else cut(name, t)

            for name, t in weights.items():
                self.register_parameter(name, nn.Parameter(shrunk(name, t)))
            for state, dense in zip(extra, moments, strict=True):
                for name, t in dense.items():
                    state[name] = shrunk(name, t)
        self.hidden = [self.hidden[i] for i in kept]


class PopulationAdam:
    """``torch.optim.Adam(..., fused=True)`` (betas 0.9, 0.999, eps 1e-8, no weight decay) per child.

    Each step calls torch's functional :func:`torch.optim.adam.adam` once per child on that
    child's parts of the stacked parameters, moments and gradients
    (:meth:`SparseBlockPopulation.child_part`), with the child's own
    learning rate: the update :func:`~sbrnn.child.train.train_run`'s optimizer makes, by the same
    kernel. All children of a population step together, so they share the step count.
    """

    def __init__(
        self,
        population: SparseBlockPopulation,
        lr: Sequence[float],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.population = population
        self.lr = [float(v) for v in lr]
        self.betas, self.eps, self.steps = betas, eps, 0
        self.exp_avg = {n: torch.zeros_like(p) for n, p in population.named_parameters()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in population.named_parameters()}

    def zero_grad(self) -> None:
        for p in self.population.parameters():
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        population = self.population
        named = [(n, p, p.grad) for n, p in population.named_parameters() if p.grad is not None]
        device = population.values_x.device
        for k, lr in enumerate(self.lr):
            adam(
                [population.child_part(n, p, k) for n, p, _ in named],
                [population.child_part(n, grad, k) for n, _, grad in named],
                [population.child_part(n, self.exp_avg[n], k) for n, _, _ in named],
                [population.child_part(n, self.exp_avg_sq[n], k) for n, _, _ in named],
                [],
                [torch.tensor(float(self.steps), device=device) for _ in named],
                fused=device.type in ("cpu", "cuda"),
                amsgrad=False,
                beta1=self.betas[0],
                beta2=self.betas[1],
                lr=lr,
                weight_decay=0.0,
                eps=self.eps,
                maximize=False,
            )
        self.steps += 1

    def keep(self, kept: Sequence[int]) -> None:
        """Keep children ``kept``: cuts the population and these moments alike."""
        self.population.keep(kept, extra=(self.exp_avg, self.exp_avg_sq))
        self.lr = [self.lr[i] for i in kept]


def population_key(config: RunConfig) -> str | None:
    """Configs with equal keys can share a population; None for a config that trains alone."""
    if config.arch == "lstm":
        return None
    fields = [
        config.task,
        config.task_options,
        config.seed,
        config.batch_size,
        config.precision,
        config.activation,
    ]
    return json.dumps(fields, sort_keys=True)


class PopulationTrainee:
    """A population and its :class:`PopulationAdam`: the trainee of :func:`sbrnn.child.train.fit`."""

    def __init__(self, population: SparseBlockPopulation, lr: Sequence[float]) -> None:
        self.population = population
        self.optimizer = PopulationAdam(population, lr)

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.population(x)

    def train(self, mode: bool = True) -> nn.Module:
        return self.population.train(mode)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        self.optimizer.step()

    def member_state(self, slot: int) -> dict[str, torch.Tensor]:
        return self.population.child_state(slot)

    def keep(self, slots: Sequence[int]) -> None:
        self.optimizer.keep(slots)


def train_population(
    configs: Sequence[RunConfig],
    task: Task | None = None,
    *,
    device: str | None = None,
    threads: int | None = None,
) -> list[RunRecord]:
    """Train ``configs`` and return one record per config, in order.

    Configs sharing a :func:`population_key` train together as one population; the others (and
    a group of one) train alone with :func:`~sbrnn.child.train.train_run`. ``task`` (None = built
    from the first config) serves every config of its name; a config of another task builds its
    own. ``device`` and ``threads`` as for ``train_run``. A population that fails as a whole
    (an error outside any one run) is retrained one config at a time, so every config gets the
    record ``train_run`` would give it.
    """
    configs = list(configs)
    records: dict[int, RunRecord] = {}
    groups: dict[str | None, list[int]] = {}
    for i, config in enumerate(configs):
        key = population_key(config)
        groups.setdefault(key if key is not None else f"alone {i}", []).append(i)
    if threads is not None:
        if threads < 1:
            raise SbrnnError(f"threads = {threads} is out of range; allowed: integers >= 1")
        torch.set_num_threads(threads)
    for members in groups.values():
        group = [configs[i] for i in members]
        group_task = task if task is not None and task.name == group[0].task else None
        if len(group) > 1:
            try:
                if group_task is None:
                    first = group[0]
                    group_task = build_task(first.task, seed=first.seed, **first.task_options)
                results = _train_group(group, group_task, device)
            except Exception:  # noqa: BLE001 - fall back to one by one, where each run records its failure
                results = [trainer.train_run(c, group_task, device=device) for c in group]
        else:
            results = [trainer.train_run(group[0], group_task, device=device)]
        for i, record in zip(members, results):
            records[i] = record
    return [records[i] for i in range(len(configs))]  # every config is in one group


def _train_group(configs: list[RunConfig], task: Task, device: str | None) -> list[RunRecord]:
    """One population: the configs share task, seed, batch size, precision and activation."""
    started = time.perf_counter()
    torch_device = trainer.resolve_device(device)
    members: list[trainer.Member] = []
    alone: dict[int, RunRecord] = {}
    models: list[SparseBlockRNN] = []
    for i, config in enumerate(configs):
        member = trainer.Member(config, trainer._blank_record(config))
        try:
            # population_key keeps the LSTM out, so every model is a SparseBlockRNN (and the
            # population checks it).
            models.append(cast(SparseBlockRNN, trainer.start_run(member, task, torch_device)))
        except Exception:  # noqa: BLE001 - e.g. a budget too small: train_run records it as it would alone
            alone[i] = trainer.train_run(config, task, device=device)
            continue
        members.append(member)
    if members:
        population = SparseBlockPopulation(models).to(torch_device)
        path = population.kernel_path(torch_device, configs[0].precision)
        for member in members:
            member.record.kernel_path = path
        trainee = PopulationTrainee(population, [m.config.lr for m in members])
        trainer.fit(trainee, members, task, torch_device)
        for member in members:
            try:
                trainer.test_member(member, task, torch_device)
            except Exception as exc:  # noqa: BLE001 - as train_run: the run's own failure becomes its record
                member.record.status = "failed"
                member.record.error = trainer.failure_text(exc)
    elapsed = time.perf_counter() - started
    epochs = sum(m.epochs_run for m in members) or 1
    for member in members:
        member.record.wall_seconds = elapsed * member.epochs_run / epochs
    done = {id(m.config): m.record for m in members}
    return [alone[i] if i in alone else done[id(c)] for i, c in enumerate(configs)]


MAX_PADDING = 1.25
"""A job's largest hidden size is at most this times its smallest: every child of a population
is padded to the largest ``h``, and its recurrence costs grow with the square of that."""


def population_jobs(configs: Sequence[RunConfig], size: int) -> list[tuple[RunConfig, ...]]:
    """Configs cut into jobs of at most ``size`` that can share a population.

    Configs with one :func:`population_key` go together, sorted by hidden size and cut where the
    job is full or the next ``h`` exceeds :data:`MAX_PADDING` times the job's first, so that each
    population pads little; a config that trains alone (the LSTM) is a job of its own. Groups keep
    the order in which their first config appears.
    """
    if size < 1:
        raise SbrnnError(f"population size {size} is out of range; allowed: integers >= 1")
    groups: dict[str, list[RunConfig]] = {}
    for i, config in enumerate(configs):
        key = population_key(config)
        groups.setdefault(key if key is not None else f"alone {i}", []).append(config)
    jobs: list[tuple[RunConfig, ...]] = []
    for group in groups.values():
        job: list[tuple[int, RunConfig]] = []
        for h, config in sorted(((_hidden_size(c), c) for c in group), key=lambda pair: pair[0]):
            if job and (len(job) == size or h > MAX_PADDING * job[0][0]):
                jobs.append(tuple(c for _, c in job))
                job = []
            job.append((h, config))
        jobs.append(tuple(c for _, c in job))
    return jobs


def _hidden_size(config: RunConfig) -> int:
    """``h`` of a config on its task's dims (0 where it cannot be resolved)."""
    try:
        info = get_info(config.task)
        return resolve(config, info.n_x, info.n_y)[1]
    except Exception:  # noqa: BLE001 - an unresolvable config fails in its own run, not here
        return 0
