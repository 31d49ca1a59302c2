"""Which order should a parent recommend by: its within-task ranker or its predicted minimum?

``sbrnn parent fit`` chooses between the two by its own leave-one-task-out (the lower mean
regret@1, then the higher Spearman). This measures the choice out of sample: each given parent
ranks the recorded runs of tasks it never saw (a held-out batch) both ways, with the offline
metrics of ``benchmarks/meta_loto.py`` (normalised regret@1 of the top-1 among each task's runs,
its percentile among the random draws, within-task Spearman).

    python benchmarks/parent_order.py PARENT_DIR:RECORDS_DIR [PARENT_DIR:RECORDS_DIR ...] [--json]

e.g. the parent shipped before a held-out batch was measured, with that batch's records
(docs/parent.md, "The shipped parent").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meta_loto import given_parent, is_random_draw, records_in, training_data  # noqa: E402

from sbrnn.parent import loto  # noqa: E402


def orders(parent_dir: Path, records_dir: Path) -> dict:
    """``{"ranker": summary, "minimum": summary}``: :func:`sbrnn.parent.loto.summarise` of the
    parent in ``parent_dir`` ranking each task of ``records_dir`` by its ranker and by its predicted
    minimum (the same parent without its ranker)."""
    parent = given_parent(parent_dir)
    if parent.ranker is None:
        raise SystemExit(f"{parent_dir} has no ranker; allowed: a parent fitted with its ranker")
    records = records_in(records_dir)
    data = training_data(records)
    random = is_random_draw(records, data)
    out = {}
    for name, ordering in (("ranker", parent), ("minimum", dataclasses.replace(parent, ranker=None))):
        groups = loto.leave_one_task_out(data, lambda _, test, p=ordering: p.scores(test.X), random)
        out[name] = loto.summarise(groups)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="PARENT_DIR:RECORDS_DIR")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    rows = []
    for pair in args.pairs:
        parent_dir, sep, records_dir = pair.partition(":")
        if not sep:
            parser.error(f"{pair!r} is not PARENT_DIR:RECORDS_DIR")
        summaries = orders(Path(parent_dir), Path(records_dir))
        rows.append({"parent": parent_dir, "records": records_dir, **summaries})
    if args.json:
        print(json.dumps(rows, indent=1, default=float))
        return 0
    print("| parent | records | order | tasks | mean regret@1 | median regret@1 | top-1 pct | Spearman |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        for name in ("ranker", "minimum"):
            s = row[name]
            print(
                f"| {row['parent']} | {row['records']} | {name} | {s['tasks']} | "
                f"{s['mean_regret']['1']:.3f} | {s['median_regret']['1']:.3f} | "
                f"{s['median_percentile']:.2f} | {s['median_spearman']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
