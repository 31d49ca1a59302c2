"""Child training throughput on RAD shapes, against the peers a user would pick.

One training step = forward + backward + Adam on a batch of 128 sequences of ``n_x = 2500``
inputs and ``n_y = 10`` outputs, ``T = 9`` (the paper) and ``T = 11`` (the authors' generator).
All variants run in this one process, interleaved (variant A, B, C, ..., then again), and each
row is the median over repeats of sequences per second.

Rows: sbrnn at the balanced, dense, uniform-0.2, eq. 7 and eq. 8 configurations at a 100k
budget (``path=auto``); the same with masked-dense products (``_masked``) where ``auto``
chooses a sparse one, and a sweep of W_hx densities for the sparse/masked crossover; the
authors' square-map form (one ``(n_x + h + n_y)^2`` masked map per step, written here as the
reference peer); ``torch.nn.RNN`` and ``torch.nn.LSTM`` (with a linear readout) at the same
budget; fp32 and bf16 autocast; K = 8 children of the paper's sweep space in one population
step against the same 8 one after another (each step with its batch gather); and the matmul
GFLOP/s of the dense-equivalent products of one sbrnn step (the ceiling), with the % of it
achieved.

    python benchmarks/child_throughput.py [--quick] [--json] [--profile] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from sbrnn.child import kernels
from sbrnn.child import space as sampling
from sbrnn.child.config import RunConfig
from sbrnn.child.model import SparseBlockRNN, build_model
from sbrnn.child.population import PopulationAdam, SparseBlockPopulation, population_jobs, population_losses

N_X, N_Y, BATCH, BUDGET = 2500, 10, 128, 100_000

CONFIGS = {  # name -> densities (rows h, y; columns x, h, y); None = the balanced configuration
    "balanced": None,
    "dense": ((1, 1, 1), (1, 1, 1)),
    "uniform": ((0.2, 0.2, 0.2), (0.2, 0.2, 0.2)),
    "eq7": ((1, 0.2, 0.2), (1, 1, 0.2)),
    "eq8": ((0.2, 1, 1), (0.2, 0.2, 1)),
}
CROSSOVER = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6)
"""W_hx densities (other blocks dense, h from the budget) for the sparse/masked crossover; the
rows give the x column's density, which decides the ``auto`` path."""


def sbrnn_model(densities, path: str = "auto", seed: int = 0) -> SparseBlockRNN:
    arch = "dense" if densities == CONFIGS["dense"] else "sbrnn"
    config = RunConfig(arch=arch, budget=BUDGET, densities=None if arch == "dense" else densities, seed=seed)
    return build_model(config, N_X, N_Y, path=path)[0]


class AuthorsSquare(nn.Module):
    """The authors' form: one masked ``(n_x + h + n_y)^2`` map of ``z_t = [x_t; h; y]`` per step.

    The x rows of the map exist (masked to 0) and are multiplied like every other row.
    """

    def __init__(self, model: SparseBlockRNN) -> None:
        super().__init__()
        n_x, h, n_y = model.n_x, model.hidden, model.n_y
        size = n_x + h + n_y
        weight, mask = torch.zeros(size, size), torch.zeros(size, size)
        weight[n_x:, :n_x], mask[n_x:, :n_x] = model.weight_x.detach(), model.mask_x
        weight[n_x:, n_x:], mask[n_x:, n_x:] = model.weight_s.detach(), model.mask_s
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(size))
        self.register_buffer("mask", mask)
        self.n_x, self.h = n_x, h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = x.shape
        weight = self.weight * self.mask
        state = x.new_zeros(batch, self.weight.shape[0] - self.n_x)
        outputs = []
        for t in range(steps):
            z = F.linear(torch.cat((x[:, t], state), dim=1), weight, self.bias)[:, self.n_x:]
            state = torch.cat((torch.relu(z[:, :self.h]), z[:, self.h:]), dim=1)
            outputs.append(z[:, self.h:])
        return torch.stack(outputs, dim=1)


class TorchPeer(nn.Module):
    """``torch.nn.RNN`` (ReLU) or ``torch.nn.LSTM`` with a linear readout: ``[B, T, n_x] -> [B, T, n_y]``."""

    def __init__(self, kind: str, hidden: int) -> None:
        super().__init__()
        cls = {"rnn": lambda: nn.RNN(N_X, hidden, batch_first=True, nonlinearity="relu"),
               "lstm": lambda: nn.LSTM(N_X, hidden, batch_first=True)}[kind]
        torch.manual_seed(0)
        self.core, self.readout = cls(), nn.Linear(hidden, N_Y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.core(x)[0])


def peer_hidden(kind: str) -> int:
    """Hidden size whose parameter count (biases and readout included) is closest to the budget."""
    gates = 4 if kind == "lstm" else 1

    def count(h: int) -> int:
        return gates * (h * N_X + h * h + 2 * h) + h * N_Y + N_Y

    return min(range(1, 400), key=lambda h: abs(count(h) - BUDGET))


class Bench:
    """A training-step closure over a fixed batch; ``seq`` sequences (of children) per step."""

    def __init__(self, name: str, model: nn.Module, steps: int, precision: str = "fp32",
                 seq: int = BATCH) -> None:
        self.name, self.steps, self.precision, self.seq = name, steps, precision, seq
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(BATCH, steps, N_X, generator=g)
        self.y = torch.randint(0, N_Y, (BATCH,), generator=g)
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as train_run

    def _context(self):
        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self) -> None:
        with self._context():
            out = self.model(self.x)
        loss = F.cross_entropy(out[:, -1].float(), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class PopulationBench:
    """K children in one population step (``mode = "population"``) or one after another."""

    def __init__(self, name: str, models: list[SparseBlockRNN], steps: int, mode: str) -> None:
        self.name, self.steps, self.mode, self.seq = name, steps, mode, BATCH * len(models)
        g = torch.Generator().manual_seed(2)
        self.data = torch.randn(4 * BATCH, steps, N_X, generator=g).half()  # a cached float16 data set
        self.labels = torch.randint(0, N_Y, (4 * BATCH,), generator=g)
        self.order = torch.randperm(4 * BATCH, generator=g)[:BATCH]
        if mode == "population":
            self.population = SparseBlockPopulation(models)
            self.optimizer = PopulationAdam(self.population, [1e-3] * len(models))
        else:
            self.models = models
            self.optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3, fused=True) for m in models]

    def step(self) -> None:
        if self.mode == "population":
            x, y = self.data.index_select(0, self.order).float(), self.labels[self.order]
            losses = population_losses(self.population(x), y, "cross_entropy")
            self.optimizer.zero_grad()
            losses.sum().backward()
            self.optimizer.step()
            return
        for model, optimizer in zip(self.models, self.optimizers):
            x, y = self.data.index_select(0, self.order).float(), self.labels[self.order]
            loss = F.cross_entropy(model(x)[:, -1], y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def dense_equivalent_flops(model: SparseBlockRNN, steps: int) -> float:
    """Flops of one step's products with every block dense: x projection and its weight
    gradient, and per step the recurrence, its state gradient and its weight gradient."""
    n, rows = BATCH * steps, model.hidden + model.n_y
    return 2 * (2 * n * model.n_x * rows + 3 * steps * BATCH * rows * rows)


def kept_flops(model: SparseBlockRNN, steps: int) -> float:
    """Flops of the same products over kept entries only: the useful work of a step."""
    nnz_x, nnz_s = float(model.mask_x.sum()), float(model.mask_s.sum())
    return 2 * (2 * BATCH * steps * nnz_x + 3 * steps * BATCH * nnz_s)


class MatmulBench:
    """The dense-equivalent products of one balanced sbrnn step alone (torch.mm, fp32): the
    machine's ceiling for that step. ``seq`` is the batch, so its speed reads like a step's."""

    def __init__(self, model: SparseBlockRNN, steps: int) -> None:
        self.name, self.steps, self.seq, self.precision = f"matmul_ceiling_t{steps}", steps, BATCH, "fp32"
        self.flops = dense_equivalent_flops(model, steps)
        rows, n = model.hidden + model.n_y, BATCH * steps
        g = torch.Generator().manual_seed(3)
        self.x, self.w = torch.randn(n, N_X, generator=g), torch.randn(rows, N_X, generator=g)
        self.grad, self.s = torch.randn(n, rows, generator=g), torch.randn(BATCH, rows, generator=g)
        self.ws = torch.randn(rows, rows, generator=g)

    def step(self) -> None:
        torch.mm(self.x, self.w.t())
        torch.mm(self.grad.t(), self.x)
        for _ in range(self.steps):
            torch.mm(self.s, self.ws.t())
            torch.mm(self.s, self.ws)
            torch.mm(self.s.t(), self.s)


def measure(benches: list, repeats: int, min_seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    """Sequences per wall second and per CPU second (this process, all threads) of each bench:
    medians over ``repeats`` interleaved rounds. CPU time is the less disturbed of the two when
    other jobs share the cores (but counts OpenMP threads that spin while waiting)."""
    per_round = {}
    for b in benches:  # warm up, and size each round to ~min_seconds
        b.step()
        start = time.perf_counter()
        b.step()
        per_round[b.name] = max(1, math.ceil(min_seconds / max(time.perf_counter() - start, 1e-6)))
    wall: dict[str, list[float]] = {b.name: [] for b in benches}
    cpu: dict[str, list[float]] = {b.name: [] for b in benches}
    for _ in range(repeats):
        for b in benches:
            k = per_round[b.name]
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(k):
                b.step()
            wall[b.name].append(k * b.seq / (time.perf_counter() - start))
            cpu[b.name].append(k * b.seq / max(time.process_time() - start_cpu, 1e-9))
    return ({n: statistics.median(v) for n, v in wall.items()},
            {n: statistics.median(v) for n, v in cpu.items()})


def population_models(steps: int) -> list[SparseBlockRNN]:
    """Eight children as ``child sweep --population 8`` groups them: 64 draws of the paper's
    sweep space at the budget, cut by :func:`~sbrnn.child.population.population_jobs` (sorted
    by hidden size, at most 1.25x apart), and the fifth of its eleven jobs (h 61-70), a middle
    one with eight children."""
    configs = []
    for i in range(64):
        hp = sampling.draw(sampling.run_rng(0, "rad", float(BUDGET), i), "paper")
        configs.append(RunConfig(budget=BUDGET, densities=hp.densities, means=hp.means, stds=hp.stds,
                                 lr=hp.lr))
    job = population_jobs(configs, 8)[4]
    return [build_model(config, N_X, N_Y)[0] for config in job]


class Original(nn.Module):
    """The sbrnn step as first committed (``b611a22``), for the before/after rows: masked-dense
    input projection and the recurrence through autograd, step by step; trained with torch's
    default (for-loop) Adam."""

    def __init__(self, model: SparseBlockRNN) -> None:
        super().__init__()
        self.model = model

    def project(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        return F.linear(x, m.weight_x * m.mask_x, m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, h = self.model, self.model.hidden
        projected = self.project(x)
        weight_s_t = (m.weight_s * m.mask_s).t()
        state = m.init_state(x.shape[0])
        outputs = []
        for t in range(x.shape[1]):
            pre = torch.addmm(projected[:, t], state, weight_s_t)
            state = torch.cat((torch.relu(pre[:, :h]), pre[:, h:]), dim=1)
            outputs.append(pre[:, h:])
        return torch.stack(outputs, dim=1)


def profile_phases(model: nn.Module, steps: int, repeats: int, fused: bool) -> dict[str, float]:
    """Milliseconds per step by phase: data (gather + fp32 cast of a batch from a float16 set),
    input projection (its forward and backward), recurrence (the rest of forward and backward,
    loss included), optimizer (Adam, ``fused`` or torch's default)."""
    g = torch.Generator().manual_seed(4)
    data = torch.randn(4 * BATCH, steps, N_X, generator=g).half()
    y = torch.randint(0, N_Y, (BATCH,), generator=g)
    index = torch.randperm(4 * BATCH, generator=g)[:BATCH]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
    grad = torch.randn(BATCH, steps, model.project(data[:1].float()).shape[-1], generator=g)
    phases: dict[str, list[float]] = {k: [] for k in ("data", "input projection", "recurrence", "optimizer")}
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        x = data.index_select(0, index).float()
        t1 = time.perf_counter()
        model.project(x).backward(grad)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        F.cross_entropy(model(x)[:, -1], y).backward()
        t4 = time.perf_counter()
        optimizer.step()
        t5 = time.perf_counter()
        if r:
            phases["data"].append(t1 - t0)
            phases["input projection"].append(t2 - t1)
            phases["recurrence"].append(max(0.0, (t4 - t3) - (t2 - t1)))
            phases["optimizer"].append(t5 - t4)
        optimizer.zero_grad(set_to_none=True)
    return {k: 1e3 * statistics.median(v) for k, v in phases.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and repeats (under 60 s)")
    parser.add_argument("--json", action="store_true", help="print {rows, ratios} as JSON")
    parser.add_argument("--profile", action="store_true", help="also time the phases of a balanced step")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats, min_seconds = (3, 0.25) if args.quick else (7, 0.6)
    step_counts = (9, 11)
    lstm_h, rnn_h = peer_hidden("lstm"), peer_hidden("rnn")

    benches: list = []
    for steps in step_counts:
        tag = "" if steps == 9 else f"_t{steps}"
        precisions = ("fp32", "bf16") if steps == 9 or not args.quick else ("fp32",)
        for precision in precisions:
            configs = CONFIGS if steps == 9 or not args.quick else {"balanced": None}
            for name, densities in configs.items():
                model = sbrnn_model(densities)
                benches.append(Bench(f"sbrnn_{name}_{precision}{tag}", model, steps, precision))
                if model.sparse_x() or model.sparse_s():
                    benches.append(Bench(f"sbrnn_{name}_masked_{precision}{tag}",
                                         sbrnn_model(densities, "dense"), steps, precision))
        # the reference peer in fp32 (bf16 matmuls are emulated on CPUs without bf16 units: minutes)
        benches.append(Bench(f"authors_square_fp32{tag}", AuthorsSquare(sbrnn_model(None)), steps))
        # torch's fused RNN/LSTM kernels refuse bf16 autocast on the CPU (oneDNN): fp32 peers only
        benches.append(Bench(f"rnn_fp32{tag}", TorchPeer("rnn", rnn_h), steps))
        benches.append(Bench(f"lstm_fp32{tag}", TorchPeer("lstm", lstm_h), steps))
    before = Bench("sbrnn_balanced_before_fp32", Original(sbrnn_model(None, "dense")), 9)
    before.optimizer = torch.optim.Adam(before.model.parameters(), lr=1e-3)  # the default, as first trained
    benches.append(before)
    crossover = CROSSOVER if not args.quick else (0.05, 0.1, 0.2)
    for d in crossover:
        densities = ((d, 1, 1), (1, 1, 1))
        for path in ("sparse", "dense"):
            benches.append(Bench(f"hx{d:g}_{'sparse' if path == 'sparse' else 'masked'}_fp32",
                                 sbrnn_model(densities, path), 9))
    uniform_low = ((0.1,) * 3, (0.1,) * 3)
    benches.append(Bench("sbrnn_uniform0.1_fp32", sbrnn_model(uniform_low, "sparse"), 9))
    benches.append(Bench("sbrnn_uniform0.1_masked_fp32", sbrnn_model(uniform_low, "dense"), 9))
    benches.append(PopulationBench("population8_fp32", population_models(9), 9, "population"))
    benches.append(PopulationBench("sequential8_fp32", population_models(9), 9, "sequential"))

    balanced = sbrnn_model(None)
    ceilings = [MatmulBench(balanced, steps) for steps in step_counts]
    started = time.perf_counter()
    speeds, cpu_speeds = measure(benches + ceilings, repeats, min_seconds)
    ceiling = {c.steps: c.flops * speeds[c.name] / BATCH / 1e9 for c in ceilings}
    rows = []
    for b in benches:
        row = {"name": b.name, "T": b.steps, "seq_per_s": round(speeds[b.name], 1),
               "seq_per_cpu_s": round(cpu_speeds[b.name], 1)}
        model = getattr(b, "model", None)
        if isinstance(model, SparseBlockRNN) and b.precision == "fp32":
            flops = dense_equivalent_flops(model, b.steps) * speeds[b.name] / BATCH
            row["dense_equiv_gflops"] = round(flops / 1e9, 1)
            row["kept_gflops"] = round(kept_flops(model, b.steps) * speeds[b.name] / BATCH / 1e9, 1)
            row["pct_of_ceiling"] = round(100 * flops / 1e9 / ceiling[b.steps], 1)
            row["h"] = model.hidden
            row["x_path"] = "sparse" if model.sparse_x() else "masked"
            row["s_path"] = "sparse" if model.sparse_s() else "masked"
            row["s_density"] = round(model.s_density, 3)
            row["x_density"] = round(model.x_density, 3)
        rows.append(row)

    def ratio(a: str, b: str) -> float | None:
        return round(speeds[a] / speeds[b], 2) if a in speeds and b in speeds else None

    pairs = {  # ratio name -> (numerator row, denominator row)
        "sbrnn_balanced_vs_authors_fp32": ("sbrnn_balanced_fp32", "authors_square_fp32"),
        "sbrnn_balanced_vs_lstm_fp32": ("sbrnn_balanced_fp32", "lstm_fp32"),
        "sbrnn_balanced_vs_rnn_fp32": ("sbrnn_balanced_fp32", "rnn_fp32"),
        "sbrnn_balanced_vs_authors_fp32_t11": ("sbrnn_balanced_fp32_t11", "authors_square_fp32_t11"),
        "sbrnn_balanced_vs_lstm_fp32_t11": ("sbrnn_balanced_fp32_t11", "lstm_fp32_t11"),
        "sbrnn_balanced_sparse_vs_masked_fp32": ("sbrnn_balanced_fp32", "sbrnn_balanced_masked_fp32"),
        "sbrnn_balanced_sparse_vs_masked_fp32_t11": (
            "sbrnn_balanced_fp32_t11", "sbrnn_balanced_masked_fp32_t11"),
        "sbrnn_uniform0.1_sparse_vs_masked_fp32": ("sbrnn_uniform0.1_fp32", "sbrnn_uniform0.1_masked_fp32"),
        "sbrnn_balanced_bf16_vs_fp32": ("sbrnn_balanced_bf16", "sbrnn_balanced_fp32"),
        "sbrnn_balanced_masked_bf16_vs_fp32": ("sbrnn_balanced_masked_bf16", "sbrnn_balanced_masked_fp32"),
        "population8_vs_sequential8": ("population8_fp32", "sequential8_fp32"),
        "sbrnn_balanced_after_vs_before_fp32": ("sbrnn_balanced_fp32", "sbrnn_balanced_before_fp32"),
    }
    ratios = {k: ratio(a, b) for k, (a, b) in pairs.items()}
    ceiling_pct = {r["name"]: r["pct_of_ceiling"] for r in rows if "pct_of_ceiling" in r}
    ratios["sbrnn_balanced_pct_of_ceiling"] = ceiling_pct.get("sbrnn_balanced_fp32")
    ratios["sbrnn_balanced_masked_pct_of_ceiling"] = ceiling_pct.get("sbrnn_balanced_masked_fp32")
    for d in crossover:
        ratios[f"hx{d:g}_sparse_vs_masked"] = ratio(f"hx{d:g}_sparse_fp32", f"hx{d:g}_masked_fp32")
    result = {
        "rows": rows, "ratios": ratios,
        "matmul_ceiling_gflops": {str(k): round(v, 1) for k, v in ceiling.items()},
        "machine": {"threads": args.threads, "torch": torch.__version__, "batch": BATCH,
                    "compiled_kernels": kernels.library() is not None},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.profile:
        result["profile_ms"] = {
            "before": profile_phases(Original(sbrnn_model(None, "dense")), 9, repeats, fused=False),
            "after, masked-dense": profile_phases(sbrnn_model(None, "dense"), 9, repeats, fused=True),
            "after": profile_phases(sbrnn_model(None), 9, repeats, fused=True),
        }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"child training throughput: batch {BATCH}, n_x {N_X}, n_y {N_Y}, budget {BUDGET:,}, "
          f"{args.threads} threads, torch {torch.__version__}; lstm h={lstm_h}, rnn h={rnn_h}")
    print(f"{'variant':36s} {'T':>3s} {'seq/s':>10s} {'seq/CPU-s':>10s} {'h':>4s} {'x path':>7s} "
          f"{'x dens':>6s} {'s path':>7s} {'s dens':>6s} {'dense-eq GFLOP/s':>17s} {'% ceil':>7s} "
          f"{'kept GFLOP/s':>13s}")
    for r in rows:
        print(f"{r['name']:36s} {r['T']:3d} {r['seq_per_s']:10,.0f} {r['seq_per_cpu_s']:10,.0f} "
              f"{r.get('h', ''):>4} {r.get('x_path', ''):>7s} {r.get('x_density', ''):>6} "
              f"{r.get('s_path', ''):>7s} {r.get('s_density', ''):>6} "
              f"{r.get('dense_equiv_gflops', ''):>17} {r.get('pct_of_ceiling', ''):>7} "
              f"{r.get('kept_gflops', ''):>13}")
    print("matmul ceiling (GFLOP/s, dense-equivalent products of a balanced step):",
          ", ".join(f"T={k}: {v:.1f}" for k, v in ceiling.items()))
    for k, v in ratios.items():
        print(f"  {k:44s} {v}")
    if args.profile:
        for name, phases in result["profile_ms"].items():
            print(f"profile ({name}), ms per step: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
    print(f"({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
