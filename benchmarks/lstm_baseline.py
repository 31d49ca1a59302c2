"""The LSTM baseline on long sequences: torch's LSTM op against the stepwise cell, in one run.

:class:`sbrnn.child.model.LSTMBaseline` runs torch's own LSTM op (``aten::lstm`` with its
projection) where ``n_y < hidden`` and the same cell written out step by step
(:meth:`~sbrnn.child.model.LSTMBaseline.stepwise`) where torch refuses the shape. One training
step here = forward, MSE against a fixed target, backward (no optimizer: both forms share it). The
default shape is adding-200's at its 7,600 budget (2 inputs, 1 output, hidden 361, T = 200),
batch 16, one thread. The two forms alternate round by round; each row is the median.

    python benchmarks/lstm_baseline.py [--steps 200] [--hidden 361] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from sbrnn.child.model import LSTMBaseline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=2)
    parser.add_argument("--outputs", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=361)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=5, help="training steps timed per round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.outputs >= args.hidden:
        parser.error(f"--outputs {args.outputs} must be below --hidden {args.hidden} (torch's op needs it)")
    torch.set_num_threads(1)
    model = LSTMBaseline(args.inputs, args.outputs, args.hidden)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.steps, args.inputs, generator=g)
    target = torch.randn(args.batch, args.steps, args.outputs, generator=g)
    forms = {"torch_op": model, "stepwise": model.stepwise}
    ms: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(args.rounds):
        for name, form in forms.items():
            F.mse_loss(form(x), target).backward()  # warm-up
            start = time.perf_counter()
            for _ in range(args.per_round):
                F.mse_loss(form(x), target).backward()
            ms[name].append(1e3 * (time.perf_counter() - start) / args.per_round)
    rows = [
        {
            "name": name,
            "batch": args.batch,
            "steps": args.steps,
            "threads": 1,
            "hidden": args.hidden,
            "ms_per_step": statistics.median(v),
            "rounds_ms": v,
        }
        for name, v in ms.items()
    ]
    ratio = statistics.median(ms["stepwise"]) / statistics.median(ms["torch_op"])
    if args.json:
        print(json.dumps({"rows": rows, "torch_op_vs_stepwise": ratio}, indent=1))
        return 0
    print(f"{'name':10s} {'batch':>5s} {'T':>4s} {'thr':>3s} {'hidden':>6s} {'ms/step':>8s}  rounds")
    for r in rows:
        rounds = " ".join(f"{v:.0f}" for v in r["rounds_ms"])
        print(
            f"{r['name']:10s} {r['batch']:5d} {r['steps']:4d} {r['threads']:3d} {r['hidden']:6d} "
            f"{r['ms_per_step']:8.1f}  {rounds}"
        )
    print(f"torch_op vs stepwise: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
