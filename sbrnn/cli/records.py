"""``sbrnn records``: summarise, compact, export, plot and report a records directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sbrnn.cli.options import (
    JsonOpt,
    RecordsArg,
    check_output_dir,
    check_output_file,
    held_warnings,
    writing,
)
from sbrnn.cli.render import Column, number, print_json, print_lines, render
from sbrnn.errors import SbrnnError
from sbrnn.vocabulary import STATUSES

app = typer.Typer(help="Summarise, export, plot and report run records.", no_args_is_help=True)

COUNT_COLUMNS = (Column("task"), *(number(status) for status in STATUSES), number("total"))


@app.command("summary")
def summary(directory: RecordsArg, json_out: JsonOpt = False) -> None:
    """Counts by task and status; mean minimum validation loss by hidden-proportion and
    model-density bin per task (the paper's Tables III and IV), with run counts per bin."""
    from sbrnn import records_report

    with held_warnings():
        result = records_report.summary(records_report.load_frame(directory))
    if json_out:
        print_json(result)
        return
    render(result.counts, COUNT_COLUMNS, title=f"{result.runs} runs in {directory}")
    columns = [Column("view", ""), *(number(label, fmt=".3f") for label in records_report.BIN_LABELS)]
    for task, views in result.bins.items():
        rows = []
        for column, name in records_report.BINNED.items():
            bins = views[column]
            rows.append({"view": name, **{b.bin: b.mean_min_val_loss for b in bins}})
            rows.append({"view": "  95% interval", **{b.bin: _interval(b) for b in bins}})
            rows.append({"view": "  runs (diverged)", **{b.bin: f"{b.runs} ({b.diverged})" for b in bins}})
        title = f"{task}: mean minimum validation loss by bin (ok runs; diverged runs apart)"
        render(rows, columns, title=title)


def _interval(b) -> str | None:
    """A bin's t interval as ``low-high`` (None, shown as a dash, below two runs)."""
    return None if b.ci_low is None else f"{b.ci_low:.3f}-{b.ci_high:.3f}"


@app.command("compact")
def compact(directory: RecordsArg, json_out: JsonOpt = False) -> None:
    """Merge a records directory's shards into one Parquet file per task, atomically (nothing is
    removed before the file holding it is written); readers and resume see the same runs."""
    from sbrnn.records import compact as compact_records

    if not directory.is_dir():
        raise SbrnnError(f"records directory {str(directory)!r} is not a directory")
    with writing("records directory", directory):
        done = compact_records(directory)
    if json_out:
        print_json(done)
        return
    files = ", ".join(done.written) or "-"
    print_lines(
        f"{done.runs} runs in {len(done.written)} compacted files ({files}); "
        f"{done.files_read} files read, {done.files_removed} merged and removed"
    )


@app.command("export")
def export(
    directory: RecordsArg,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write one CSV file (curves as JSON lists).")
    ] = None,
    parquet: Annotated[Path | None, typer.Option("--parquet", help="Write one Parquet file.")] = None,
) -> None:
    """Write every readable record into one CSV and/or one Parquet file."""
    from sbrnn import records_report

    if csv is None and parquet is None:
        raise SbrnnError("give --csv FILE or --parquet FILE (or both)")
    for flag, path, suffix in (("--csv", csv, ".csv"), ("--parquet", parquet, ".parquet")):
        if path is not None and path.suffix.lower() != suffix:
            raise SbrnnError(f"{flag} {str(path)!r} must end in {suffix}")
    check_output_file(csv, "--csv")
    check_output_file(parquet, "--parquet")
    for flag, path in (("--csv", csv), ("--parquet", parquet)):
        if path is not None:
            with held_warnings(), writing(flag, path):
                count = records_report.export(directory, path)
            print_lines(f"{count} records written to {path}")


@app.command("plot")
def plot(
    directory: RecordsArg,
    out: Annotated[Path, typer.Option(help="Directory for the PNG files.")],
) -> None:
    """PNGs per task: Fig. 6 (validation curves by hidden proportion), Fig. 8 (minimum validation
    loss vs hidden proportion and model density), Fig. 7b/9b (vs the largest block's density)."""
    from sbrnn import records_report

    check_output_dir(out, "--out")
    with held_warnings():
        frame = records_report.load_frame(directory)
    with writing("--out", out):
        print_lines(*(str(path) for path in records_report.plot(frame, out)))


@app.command("report")
def report(
    directory: RecordsArg,
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write (its directory must exist).")],
    parent: Annotated[
        Path | None,
        typer.Option("--parent", help="A parent directory: add its predicted-vs-actual plots on these runs."),
    ] = None,
) -> None:
    """One self-contained HTML page to judge a sweep by: counts, the best runs with their `sbrnn child
    train` lines, curves against the baselines, Table IV with 95% intervals, Fig. 6 and Fig. 8,
    hyperparameter importance, tuning studies and, with --parent, predicted vs actual."""
    from sbrnn import records_html

    with held_warnings(), writing("--out", out):
        path = records_html.write_report(directory, out, parent)
    print_lines(f"report written to {path}")
