"""Child training throughput on RAD's shape, at the shapes sweeps and `child train` run, against peers.

One training step = forward + backward + Adam on a batch of RAD-shaped sequences (``n_x = 2500``
inputs, ``n_y = 10`` outputs, cross-entropy after the last step). Shapes: the headline is what
users run — batch 16, T = 11 (RAD with its query step), one torch thread (a sweep worker);
secondary rows add batch 128 and 2 threads. Within a shape every variant runs in this one
process, interleaved (A, B, C, ..., then again), and each row is the median over repeats.

Rows (all at a 100k budget of trainable weights, biases excluded):

``sbrnn_balanced``         the a-priori balanced child (``path=auto``: sparse x path, compiled recurrence)
``sbrnn_balanced_masked``  the same child with masked-dense products (``path=dense``)
``sbrnn_uniform0.1`` / ``_masked``  every block at density 0.1 (full run only)
``authors_square``         the authors' form: one masked ``(n_x + h + n_y)^2`` map per step
``torch_lstm``             ``torch.nn.LSTM(2500, h)`` as torch runs it by default (oneDNN), no
                           projection, plus a linear readout, ``h`` so its weights match the budget
``torch_rnn``              ``torch.nn.RNN`` (ReLU) the same way
``lstm_baseline``          the LSTM the sweeps train (:class:`sbrnn.child.model.LSTMBaseline`)

Columns: sequences per second; ``useful_gflops``, the multiply-adds of kept weights only (2 flops
each; per sample-step a kept input weight does its forward product and its weight gradient, a
kept recurrent weight also its state gradient); and ``pct_of_matmul``, that rate as a share of
this machine's fp32 matmul rate at the same thread count (``torch.mm`` of 1024^2 matrices,
measured in the same run). Masked-dense products count the same useful work as the sparse ones:
multiplying zeros is not useful work.

    python benchmarks/child_throughput.py [--quick] [--json] [--profile]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sbrnn.child import kernels
from sbrnn.child.config import RunConfig
from sbrnn.child.model import LSTMBaseline, SparseBlockRNN, build_model

N_X, N_Y, BUDGET = 2500, 10, 100_000


@dataclass(frozen=True)
class Shape:
    batch: int
    steps: int
    threads: int

    @property
    def tag(self) -> str:
        return f"b{self.batch} T{self.steps} {self.threads}t"


HEADLINE = Shape(16, 11, 1)
SECONDARY = (Shape(128, 11, 1), Shape(16, 11, 2), Shape(128, 9, 2))
UNIFORM_LOW = ((0.1,) * 3, (0.1,) * 3)


def sbrnn_model(densities=None, path: str = "auto") -> SparseBlockRNN:
    """The 100k child of ``densities`` (None = a-priori balanced), masks and init from seed 0."""
    return build_model(RunConfig(budget=BUDGET, densities=densities), N_X, N_Y, path=path)[0]


class AuthorsSquare(nn.Module):
    """The authors' form: one masked ``(n_x + h + n_y)^2`` map of ``z_t = [x_t; h; y]`` per step.

    The x rows of the map exist (masked to 0) and are multiplied like every other row."""

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
        self.useful = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = x.shape
        weight = self.weight * self.mask
        state = x.new_zeros(batch, self.weight.shape[0] - self.n_x)
        outputs = []
        for t in range(steps):
            z = F.linear(torch.cat((x[:, t], state), dim=1), weight, self.bias)[:, self.n_x :]
            state = torch.cat((torch.relu(z[:, : self.h]), z[:, self.h :]), dim=1)
            outputs.append(z[:, self.h :])
        return torch.stack(outputs, dim=1)


class TorchPeer(nn.Module):
    """``torch.nn.LSTM`` or ``torch.nn.RNN`` (ReLU), batch first, no projection, as torch runs it by
    default, with a linear readout: ``[B, T, n_x] -> [B, T, n_y]``."""

    def __init__(self, kind: str, hidden: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.kind, self.hidden = kind, hidden
        self.core = (
            nn.LSTM(N_X, hidden, batch_first=True)
            if kind == "lstm"
            else nn.RNN(N_X, hidden, batch_first=True, nonlinearity="relu")
        )
        self.readout = nn.Linear(hidden, N_Y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.core(x)[0])


def peer_weights(kind: str, hidden: int) -> tuple[int, int]:
    """``(input weights, recurrent weights)`` of a peer, biases excluded as in the budget; the
    readout counts as an input weight (forward and weight gradient, no state gradient)."""
    gates = 4 if kind == "lstm" else 1
    return gates * hidden * N_X + hidden * N_Y, gates * hidden * hidden


def peer_hidden(kind: str) -> int:
    """The hidden size whose weights (biases excluded) are closest to the budget."""
    return min(range(1, 400), key=lambda h: abs(sum(peer_weights(kind, h)) - BUDGET))


def useful_flops(model: nn.Module, shape: Shape) -> float:
    """Flops of kept weights' products in one training step (see the module doc)."""
    n = shape.batch * shape.steps
    if isinstance(model, AuthorsSquare):
        model = model.useful
    if isinstance(model, SparseBlockRNN):
        x_kept, s_kept = float(model.mask_x.sum()), float(model.mask_s.sum())
    elif isinstance(model, TorchPeer):
        x_kept, s_kept = peer_weights(model.kind, model.hidden)
    elif isinstance(model, LSTMBaseline):
        h, p = model.hidden, model.n_y
        x_kept, s_kept = 4 * h * N_X + p * h, 4 * h * p
    else:
        raise TypeError(type(model).__name__)
    return 2.0 * n * (2 * x_kept + 3 * s_kept)


class Bench:
    """A training-step closure over a fixed batch of ``shape``."""

    def __init__(self, name: str, model: nn.Module, shape: Shape) -> None:
        self.name, self.model, self.shape = name, model, shape
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(shape.batch, shape.steps, N_X, generator=g)
        self.y = torch.randint(0, N_Y, (shape.batch,), generator=g)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as train_run

    def step(self) -> None:
        loss = F.cross_entropy(self.model(self.x)[:, -1], self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def matmul_gflops(threads: int, seconds: float) -> float:
    """This machine's fp32 ``torch.mm`` rate on 1024^2 matrices at ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        done += 1
    return 2 * 1024**3 * done / (time.perf_counter() - start) / 1e9


def measure(benches: list[Bench], repeats: int, min_seconds: float) -> dict[str, float]:
    """Sequences per wall second of each bench: the median over ``repeats`` interleaved rounds."""
    per_round = {}
    for b in benches:  # warm up, and size each round to ~min_seconds
        b.step()
        start = time.perf_counter()
        b.step()
        per_round[b.name] = max(1, math.ceil(min_seconds / max(time.perf_counter() - start, 1e-6)))
    speeds: dict[str, list[float]] = {b.name: [] for b in benches}
    for _ in range(repeats):
        for b in benches:
            k = per_round[b.name]
            start = time.perf_counter()
            for _ in range(k):
                b.step()
            speeds[b.name].append(k * b.shape.batch / (time.perf_counter() - start))
    return {n: statistics.median(v) for n, v in speeds.items()}


def shape_benches(shape: Shape, full: bool) -> list[Bench]:
    lstm_h, rnn_h = peer_hidden("lstm"), peer_hidden("rnn")
    models = {
        "sbrnn_balanced": sbrnn_model(),
        "sbrnn_balanced_masked": sbrnn_model(path="dense"),
        "authors_square": AuthorsSquare(sbrnn_model(path="dense")),
        "torch_lstm": TorchPeer("lstm", lstm_h),
        "torch_rnn": TorchPeer("rnn", rnn_h),
        "lstm_baseline": build_model(RunConfig(arch="lstm", budget=BUDGET), N_X, N_Y)[0],
    }
    if full:
        models["sbrnn_uniform0.1"] = sbrnn_model(UNIFORM_LOW, "sparse")
        models["sbrnn_uniform0.1_masked"] = sbrnn_model(UNIFORM_LOW, "dense")
    return [Bench(name, model, shape) for name, model in models.items()]


def profile_phases(shape: Shape, repeats: int) -> dict[str, float]:
    """Milliseconds per training step of the balanced child at ``shape`` by phase: data (gather
    and fp32 cast of a batch from a float16 set), input projection (forward and backward),
    recurrence (the rest of forward and backward, loss included), optimizer (fused Adam)."""
    torch.set_num_threads(shape.threads)
    model = sbrnn_model()
    g = torch.Generator().manual_seed(4)
    data = torch.randn(8 * shape.batch, shape.steps, N_X, generator=g).half()
    y = torch.randint(0, N_Y, (shape.batch,), generator=g)
    index = torch.randperm(8 * shape.batch, generator=g)[: shape.batch]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    grad = torch.randn(shape.batch, shape.steps, model.hidden + N_Y, generator=g)
    phases: dict[str, list[float]] = {k: [] for k in ("data", "input projection", "recurrence", "optimizer")}
    for r in range(20 * repeats + 1):
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
    return {k: round(1e3 * statistics.median(v), 3) for k, v in phases.items()}


RATIOS = {  # name -> (numerator row, denominator row), per shape
    "balanced_vs_masked": ("sbrnn_balanced", "sbrnn_balanced_masked"),
    "balanced_vs_torch_lstm": ("sbrnn_balanced", "torch_lstm"),
    "balanced_vs_lstm_baseline": ("sbrnn_balanced", "lstm_baseline"),
    "balanced_vs_torch_rnn": ("sbrnn_balanced", "torch_rnn"),
    "balanced_vs_authors": ("sbrnn_balanced", "authors_square"),
    "uniform0.1_vs_masked": ("sbrnn_uniform0.1", "sbrnn_uniform0.1_masked"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the headline shape and one more (under 60 s)")
    parser.add_argument("--json", action="store_true", help="print {rows, ratios, ...} as JSON")
    parser.add_argument("--profile", action="store_true", help="also time the phases of a balanced step")
    args = parser.parse_args(argv)
    shapes = (HEADLINE, SECONDARY[0]) if args.quick else (HEADLINE, *SECONDARY)
    repeats, min_seconds = (3, 0.25) if args.quick else (7, 0.5)
    started = time.perf_counter()
    rows, ratios, matmul = [], {}, {}
    for shape in shapes:
        torch.set_num_threads(shape.threads)
        if shape.threads not in matmul:
            matmul[shape.threads] = matmul_gflops(shape.threads, 1.0 if args.quick else 2.0)
        benches = shape_benches(shape, full=not args.quick and shape == HEADLINE)
        speeds = measure(benches, repeats, min_seconds)
        for b in benches:
            gflops = useful_flops(b.model, shape) * speeds[b.name] / shape.batch / 1e9
            rows.append(
                {
                    "name": b.name,
                    "batch": shape.batch,
                    "steps": shape.steps,
                    "threads": shape.threads,
                    "seq_per_s": round(speeds[b.name], 1),
                    "useful_gflops": round(gflops, 2),
                    "pct_of_matmul": round(100 * gflops / matmul[shape.threads], 1),
                    "h": b.model.h
                    if isinstance(b.model, AuthorsSquare)
                    else getattr(b.model, "hidden", None),
                }
            )
        for key, (a, b) in RATIOS.items():
            if a in speeds and b in speeds:
                ratios[f"{key} ({shape.tag})"] = round(speeds[a] / speeds[b], 2)
    result = {
        "rows": rows,
        "ratios": ratios,
        "matmul_gflops": {str(k): round(v, 1) for k, v in matmul.items()},
        "machine": {
            "torch": torch.__version__,
            "compiled_kernels": kernels.library() is not None,
            "kernel_variant": kernels.variant(),
            "budget": BUDGET,
            "torch_lstm_h": peer_hidden("lstm"),
            "torch_rnn_h": peer_hidden("rnn"),
        },
    }
    if args.profile:
        profiled = (HEADLINE, SECONDARY[0])
        result["profile_ms"] = {shape.tag: profile_phases(shape, repeats) for shape in profiled}
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"child training throughput: RAD shape (n_x {N_X}, n_y {N_Y}), budget {BUDGET:,}, torch "
        f"{torch.__version__}, kernels {result['machine']['kernel_variant']}; torch_lstm h="
        f"{peer_hidden('lstm')}, torch_rnn h={peer_hidden('rnn')}"
    )
    print(
        f"{'name':24s} {'batch':>5s} {'T':>3s} {'thr':>3s} {'seq/s':>9s} {'useful GFLOP/s':>15s} "
        f"{'% of matmul':>11s} {'h':>5s}"
    )
    for r in rows:
        print(
            f"{r['name']:24s} {r['batch']:5d} {r['steps']:3d} {r['threads']:3d} {r['seq_per_s']:9,.0f} "
            f"{r['useful_gflops']:15.2f} {r['pct_of_matmul']:11.1f} {r['h'] or '':>5}"
        )
    print(
        "matmul rate (GFLOP/s, torch.mm 1024^2):",
        ", ".join(f"{k} thread(s) {v}" for k, v in result["matmul_gflops"].items()),
    )
    for k, v in ratios.items():
        print(f"  {k:48s} {v:.2f}x")
    for tag, phases in result.get("profile_ms", {}).items():
        print(
            f"profile of sbrnn_balanced ({tag}), ms per step: "
            + ", ".join(f"{k} {v:.3f}" for k, v in phases.items())
        )
    print(f"({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
