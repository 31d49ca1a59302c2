"""The run record: one row per training run, the one schema every writer and reader uses.

A records directory holds Parquet files (``<name>.parquet``), each written atomically (a
temporary file in the same directory, fsync, then ``os.replace``), so a reader never sees half a
file from us: one-run *shards* (``<run_id>.parquet``, what a sweep writes as runs finish) and
*compacted* files of many runs (``<task>.parquet``, what :func:`compact` merges shards into).
The directory reads with ``polars.read_parquet(dir + "/*.parquet", missing_columns="insert")``
or pandas; our own reader, :func:`read_table`, reads every file in one multi-file polars scan,
skips foreign or corrupt files with a warning naming them, reads schema-1 files (the columns
schema 2 added come back null), and keeps one row per run id (the newest, where a crash between
a compaction's write and its cleanup left a run twice).

Per-epoch curves hold only the epochs that ran: early stopping, pruning and divergence leave
later epochs missing, never invented.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pyarrow as pa
import pyarrow.parquet as pq

from sbrnn.io import atomic_write
from sbrnn.vocabulary import ARCHS, BLOCKS, STATUSES

if TYPE_CHECKING:  # polars is imported where it is used
    import polars as pl

SCHEMA_VERSION = 2
"""2 added the task's family, traits and options, the kernel path, the thread count, and where a
run came from (``origin``, ``label``, ``study``, ``trial``); schema-1 files read with those null."""
READABLE_VERSIONS = (1, 2)


TRAITS = (
    "n_train",
    "input_std",
    "input_zero_frac",
    "input_autocorr",
    "target_std",
    "target_autocorr",
    "class_entropy",
    "baseline_loss",
)
"""Task traits written into every record as ``trait_<name>`` (:mod:`sbrnn.datasets.traits`)."""


@dataclass
class RunRecord:
    """Everything about one training run.

    Block-wise values are flat columns named by block (``d_hx`` density, ``mu_hx`` init mean,
    ``sigma_hx`` init std, ``trainable_hx`` realised trainable count); they are null for the
    LSTM baseline, which has no block grid. ``hidden_proportion`` and ``model_density`` come
    from the realised mask counts. ``best_epoch`` is 1-based (the first epoch is 1).

    Schema 2: ``task_family`` and ``trait_<name>`` (:data:`TRAITS`) describe the task,
    ``task_options`` its builder options as JSON; ``kernel_path`` names the products the run
    used (e.g. ``sparse-x+compiled-recurrence``, ``dense-x+torch-recurrence``, ``torch`` for the
    LSTM) and ``threads`` the torch thread count (results are reproducible for the same seed and
    thread count); ``origin`` says what made the run (``sweep``, ``train``, ``config``,
    ``tune``), ``label`` its place in a sweep (``random 3``, ``balanced``, ``dense``), and
    ``study`` / ``trial`` the Optuna study and trial number of a tuned run.
    """

    run_id: str
    task: str
    n_x: int
    n_y: int
    steps: int
    loss_kind: str
    arch: str
    h: int
    lr: float
    batch_size: int
    epochs: int
    seed: int
    status: str = "ok"
    budget: float | None = None
    activation: str = "relu"
    precision: str = "fp32"
    d_hx: float | None = None
    d_hh: float | None = None
    d_hy: float | None = None
    d_yx: float | None = None
    d_yh: float | None = None
    d_yy: float | None = None
    mu_hx: float | None = None
    mu_hh: float | None = None
    mu_hy: float | None = None
    mu_yx: float | None = None
    mu_yh: float | None = None
    mu_yy: float | None = None
    sigma_hx: float | None = None
    sigma_hh: float | None = None
    sigma_hy: float | None = None
    sigma_yx: float | None = None
    sigma_yh: float | None = None
    sigma_yy: float | None = None
    trainable_hx: int | None = None
    trainable_hh: int | None = None
    trainable_hy: int | None = None
    trainable_yx: int | None = None
    trainable_yh: int | None = None
    trainable_yy: int | None = None
    trainable_total: int = 0
    bias_count: int = 0
    hidden_proportion: float | None = None
    model_density: float | None = None
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    min_val_loss: float | None = None
    best_epoch: int | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    error: str | None = None
    wall_seconds: float = 0.0
    device: str = "cpu"
    sbrnn_version: str = ""
    torch_version: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    schema_version: int = SCHEMA_VERSION
    task_family: str | None = None
    task_options: str | None = None
    trait_n_train: float | None = None
    trait_input_std: float | None = None
    trait_input_zero_frac: float | None = None
    trait_input_autocorr: float | None = None
    trait_target_std: float | None = None
    trait_target_autocorr: float | None = None
    trait_class_entropy: float | None = None
    trait_baseline_loss: float | None = None
    kernel_path: str | None = None
    threads: int | None = None
    origin: str | None = None
    label: str | None = None
    study: str | None = None
    trial: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch {self.arch!r} is not one of {ARCHS}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: Mapping) -> RunRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: _plain(v) for k, v in row.items() if k in names})


def _plain(value):
    """numpy scalars and arrays from pandas rows -> Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


_FLOAT_LIST = pa.list_(pa.float64())
_TYPES = {  # annotations are strings under `from __future__ import annotations`
    "int | None": pa.int64(),
    "float | None": pa.float64(),
    "str | None": pa.string(),
    "list[float]": _FLOAT_LIST,
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
}

SCHEMA = pa.schema([pa.field(f.name, _TYPES[cast(str, f.type)]) for f in fields(RunRecord)])
"""The Parquet schema of a record shard; every shard uses exactly this."""

BLOCK_COLUMNS = {prefix: [f"{prefix}_{b}" for b in BLOCKS] for prefix in ("d", "mu", "sigma", "trainable")}


def records_table(records: Iterable[RunRecord]) -> pa.Table:
    """Records as one Arrow table with :data:`SCHEMA`."""
    return pa.Table.from_pylist([r.to_dict() for r in records], schema=SCHEMA)


def write_atomic(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``path`` as Parquet, atomically (:func:`sbrnn.io.atomic_write`)."""
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def shard_status(path: str | os.PathLike) -> str | None:
    """The status of the run in the shard ``path``; None when there is none or it cannot be read."""
    try:
        column = pq.read_table(path, columns=["status"]).column("status").to_pylist()
    except Exception:  # noqa: BLE001 - missing, truncated or foreign: no status
        return None
    return column[0] if len(column) == 1 else None


class _KeptOk(Exception):
    """Raised inside the atomic write to drop a failure whose run has an ``ok`` shard already."""


def write_record(record: RunRecord, directory: str | os.PathLike) -> Path:
    """Write one record as the shard ``<directory>/<run_id>.parquet`` (atomic; replaces a rerun).

    A ``failed`` record never replaces an ``ok`` one of the same run (two sweeps on one
    directory, or a lost worker's failure arriving after another sweep finished the run): the
    existing shard is checked once the new one sits in its temporary file, right before that is
    flushed and renamed, and is then kept. What remains is an ``ok`` shard renamed into place in
    the milliseconds between that check and the rename: the run is then recorded ``failed``, never
    missing, and a sweep that retries failed runs reruns it; sweeps' claims
    (:mod:`sbrnn.child.sweep.claims`) make two writers of one run rare in the first place.
    """
    path = Path(directory) / f"{record.run_id}.parquet"
    table = records_table([record])

    def write(tmp: Path) -> None:
        pq.write_table(table, tmp)
        if record.status == "failed" and shard_status(path) == "ok":
            raise _KeptOk

    try:
        return atomic_write(path, write)
    except _KeptOk:
        return path


def record_files(directory: str | os.PathLike) -> list[Path]:
    """The Parquet files of a records directory, sorted by name (temporary files excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))


def _frame(table: pa.Table) -> pl.DataFrame:
    """``table`` as a polars frame (a table converts to a frame, never to a series)."""
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _polars_schema(names: Sequence[str]):
    return _frame(pa.schema([SCHEMA.field(n) for n in names]).empty_table()).schema


def _scan(paths: Sequence[Path], names: Sequence[str]) -> pa.Table:
    """``paths`` read as one table of ``names`` (+ ``run_id``, ``schema_version``, ``created_at``,
    and ``__file``, the path of each row's file) in one multi-file polars scan; columns a file
    lacks come back null."""
    import polars as pl

    wanted = list(dict.fromkeys([*names, "run_id", "schema_version", "created_at"]))
    frame = pl.scan_parquet(
        [str(p) for p in paths],
        schema=_polars_schema(wanted),
        missing_columns="insert",
        extra_columns="ignore",
        include_file_paths="__file",
    ).collect()
    return frame.to_arrow()


def _check_versions(table: pa.Table) -> set[str]:
    """The files of ``table`` (column ``__file``) whose rows are not all of a readable version."""
    import pyarrow.compute as pc

    bad = pc.invert(pc.fill_null(pc.is_in(table["schema_version"], pa.array(READABLE_VERSIONS)), False))
    return set(pc.unique(pc.filter(table["__file"], bad)).to_pylist())


def _read(paths: Sequence[Path], names: Sequence[str]) -> pa.Table:
    """The rows of every readable file among ``paths`` (columns ``names`` plus ``schema_version``,
    ``created_at`` and ``__file``); unreadable files and files of an unknown schema version are
    skipped with a warning naming them."""
    try:
        table = _scan(paths, names)
    except Exception:  # noqa: BLE001 - find the unreadable files one by one, then read the rest together
        good = []
        for path in paths:
            try:
                _scan([path], names)
                good.append(path)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped, by design
                _warn_skipped(path, exc)
        if not good:
            return pa.schema([]).empty_table()
        table = _scan(good, names)
    bad = _check_versions(table)
    for file in sorted(bad):
        _warn_skipped(file, "not an sbrnn records file of a readable schema version")
    if bad:
        import pyarrow.compute as pc

        table = table.filter(pc.invert(pc.is_in(table["__file"], pa.array(sorted(bad)))))
    return table


def read_table(directory: str | os.PathLike, columns: Sequence[str] | None = None) -> pa.Table:
    """All readable runs of ``directory`` (shards and compacted files) as one table with
    :data:`SCHEMA` (or its ``columns``, e.g. ``["run_id", "status"]``, which a sweep reads to
    resume), one row per run id.

    Files are read in one multi-file scan. A file that cannot be read (truncated, corrupt,
    foreign, or of an unknown schema version) is skipped with a :class:`RuntimeWarning` naming
    it; it never stops the read. Schema-1 files read with the columns schema 2 added null. A run
    id found twice (a compaction interrupted between writing its file and removing the shards it
    merged) keeps its newest row (``created_at``).
    """
    names = list(SCHEMA.names if columns is None else columns)
    schema = pa.schema([SCHEMA.field(name) for name in names])
    paths = record_files(directory)
    table = _read(paths, names) if paths else None
    if table is None or table.num_rows == 0:
        return schema.empty_table()
    return _newest_per_run(table).select(names).cast(schema)


def _warn_skipped(path, why) -> None:
    warnings.warn(f"skipping unreadable records file {path}: {why}", RuntimeWarning, stacklevel=3)


def _newest_per_run(table: pa.Table) -> pa.Table:
    """One row per ``run_id``: the newest by ``created_at`` (ties: the later file)."""
    frame = _frame(table).with_row_index("__row")
    if frame["run_id"].n_unique() == frame.height:
        return table
    keep = (
        frame.sort(["created_at", "__row"])
        .group_by("run_id", maintain_order=True)
        .last()
        .sort("__row")["__row"]
    )
    return table.take(pa.array(keep.to_list()))


def read_frame(directory: str | os.PathLike):
    """All readable runs of ``directory`` as a ``polars.DataFrame`` (:func:`read_table`; one row per
    run, the columns of :class:`RunRecord`); ``.to_pandas()`` gives pandas."""
    import polars as pl

    frame = pl.from_arrow(read_table(directory))
    assert isinstance(frame, pl.DataFrame)  # a table, not a column
    return frame


def read_records(directory: str | os.PathLike) -> list[RunRecord]:
    """All readable records of ``directory`` (see :func:`read_table`)."""
    return [RunRecord.from_dict(row) for row in read_table(directory).to_pylist()]


def compacted_name(task: str) -> str:
    """The file name of a task's compacted runs: the task name made safe for a file name
    (``minari:D4RL/hammer/expert-v2`` -> ``minari-D4RL-hammer-expert-v2.parquet``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", task).strip("-.") + ".parquet"


@dataclass(frozen=True)
class Compaction:
    """What :func:`compact` did: files read and removed, the compacted files written, runs kept."""

    files_read: int
    files_removed: int
    written: tuple[str, ...]
    runs: int

    def to_dict(self) -> dict:
        return asdict(self)


def compact(directory: str | os.PathLike) -> Compaction:
    """Merge every file of ``directory`` into one compacted file per task (:func:`compacted_name`).

    Each task's runs (from its old compacted file and every shard; one row per run id, the
    newest) are written atomically to a new compacted file first; only then are the files that
    were merged into it removed. A crash at any point loses nothing: at worst a run is found in
    two files, and readers keep one. Unreadable files are left where they are (with a warning).
    Shards that appear while this runs are not touched.
    """

    directory = Path(directory)
    paths = record_files(directory)
    table = _read(paths, SCHEMA.names) if paths else None
    if table is None or table.num_rows == 0:
        return Compaction(len(paths), 0, (), 0)
    merged = set(table["__file"].to_pylist())
    frame = _frame(_newest_per_run(table).select(SCHEMA.names))
    written = []
    for (task,), part in frame.group_by("task", maintain_order=True):
        target = directory / compacted_name(task)
        write_atomic(part.sort("created_at", "run_id").to_arrow().cast(SCHEMA), target)
        written.append(str(target))
    removed = 0
    for path in paths:
        if str(path) in merged and str(path) not in written:
            path.unlink(missing_ok=True)
            removed += 1
    return Compaction(len(paths), removed, tuple(Path(p).name for p in written), frame.height)
