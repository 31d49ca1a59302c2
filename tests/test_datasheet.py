"""sweeps/datasheet.py on the shipped meta-dataset: every count in the table is read from the records."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import polars as pl

from sbrnn.records import read_frame

ROOT = Path(__file__).resolve().parents[1]


def _datasheet_main():
    spec = importlib.util.spec_from_file_location("datasheet", ROOT / "sweeps" / "datasheet.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_datasheet_counts_match_the_records(capsys, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("## How it was run\n\nHand-written part.\n")
    main = _datasheet_main()
    args = [str(ROOT / "data" / "zoo-v1"), str(ROOT / "sweeps" / "zoo-v1.toml"), "--notes", str(notes)]
    assert main(args) == 0
    text = capsys.readouterr().out
    frame = read_frame(ROOT / "data" / "zoo-v1")
    assert f"{frame.height:,} run records" in text
    assert text.rstrip().endswith("Hand-written part.")
    per_task = dict(frame.group_by("task").len().iter_rows())
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 9 and cells[0] in per_task:
            rows[cells[0]] = cells
    assert set(rows) == set(per_task)
    for task, cells in rows.items():
        assert int(cells[9]) == per_task[task], task
        assert int(cells[8]) > 0
    ok = frame.filter(pl.col("status") == "ok").height
    assert sum(int(c[10]) for c in rows.values()) == ok
    assert re.search(r"from \S+ to \S+ \(UTC\)", text)
