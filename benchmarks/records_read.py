"""Reading records at the scale of real sweeps: 20,000 runs as one-run shards and compacted per task.

Writes ``--runs`` synthetic run records (``tests/conftest.py``'s generator, curves of 12 epochs)
into a temporary directory as one Parquet shard each, then times, in this process:

- ``read_table``: sbrnn's reader (one multi-file polars scan, bad files skipped, one row per run);
- ``polars.read_parquet(dir/*.parquet)``: the floor, polars alone;
- ``records summary``: the whole command (``sbrnn records summary DIR --json`` in a subprocess,
  interpreter start included), which is what the goal is about (under 2 s for 20,000 runs);
- the same three after ``sbrnn records compact`` (one file per task).

    python benchmarks/records_read.py [--runs 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def timed(fn, repeats: int = 3) -> float:
    """The best of ``repeats`` wall times of ``fn()``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(directory: Path) -> dict:
    import polars as pl

    from sbrnn.records import read_table

    def summary() -> None:
        done = subprocess.run(
            [sys.executable, "-m", "sbrnn.cli", "records", "summary", str(directory), "--json"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(done.stderr)

    return {
        "files": len(list(directory.glob("*.parquet"))),
        "read_table_s": round(timed(lambda: read_table(directory)), 3),
        "polars_read_parquet_s": round(
            timed(lambda: pl.read_parquet(str(directory / "*.parquet"), missing_columns="insert")), 3
        ),
        "records_summary_s": round(timed(summary, repeats=2), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from conftest import make_synthetic_records

    from sbrnn.records import compact, write_record

    with tempfile.TemporaryDirectory(prefix="sbrnn-records-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        for record in make_synthetic_records(args.runs, seed=7):
            write_record(record, directory)
        written = time.perf_counter() - started
        shards = measure(directory)
        compact(directory)
        compacted = measure(directory)
    result = {"runs": args.runs, "write_s": round(written, 1), "shards": shards, "compacted": compacted}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{args.runs:,} runs (written as shards in {result['write_s']} s); best wall seconds")
    print(f"{'layout':10s} {'files':>7s} {'read_table':>11s} {'polars':>8s} {'records summary':>16s}")
    for name in ("shards", "compacted"):
        r = result[name]
        print(
            f"{name:10s} {r['files']:7d} {r['read_table_s']:11.3f} {r['polars_read_parquet_s']:8.3f} "
            f"{r['records_summary_s']:16.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
