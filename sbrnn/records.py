"""The run record: one row per training run, the one schema every writer and reader uses.

A records directory holds Parquet shards (``<name>.parquet``), each written atomically (a
temporary file in the same directory, then ``os.replace``), so a reader never sees half a file
from us. The directory reads with ``polars.read_parquet(dir + "/*.parquet")`` or pandas; our own
reader, :func:`read_records`, also skips foreign or corrupt files with a warning naming them.

Per-epoch curves hold only the epochs that ran: early stopping and divergence leave later
epochs missing, never invented.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sbrnn.child.config import ARCHS
from sbrnn.child.spec import BLOCKS

SCHEMA_VERSION = 1

STATUSES = ("ok", "diverged", "failed")


@dataclass
class RunRecord:
    """Everything about one training run.

    Block-wise values are flat columns named by block (``d_hx`` density, ``mu_hx`` init mean,
    ``sigma_hx`` init std, ``trainable_hx`` realised trainable count); they are null for the
    LSTM baseline, which has no block grid. ``hidden_proportion`` and ``model_density`` come
    from the realised mask counts. ``best_epoch`` is 1-based (the first epoch is 1).
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
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    schema_version: int = SCHEMA_VERSION

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

SCHEMA = pa.schema([pa.field(f.name, _TYPES[f.type]) for f in fields(RunRecord)])
"""The Parquet schema of a record shard; every shard uses exactly this."""

BLOCK_COLUMNS = {
    prefix: [f"{prefix}_{b}" for b in BLOCKS] for prefix in ("d", "mu", "sigma", "trainable")
}


def records_table(records: Iterable[RunRecord]) -> pa.Table:
    """Records as one Arrow table with :data:`SCHEMA`."""
    return pa.Table.from_pylist([r.to_dict() for r in records], schema=SCHEMA)


def write_atomic(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``path`` as Parquet through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_record(record: RunRecord, directory: str | os.PathLike) -> Path:
    """Write one record as the shard ``<directory>/<run_id>.parquet`` (atomic; replaces a rerun)."""
    return write_atomic(records_table([record]), Path(directory) / f"{record.run_id}.parquet")


def record_files(directory: str | os.PathLike) -> list[Path]:
    """The Parquet shards of a records directory, sorted by name (temporary files excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))


def read_table(directory: str | os.PathLike, columns: Sequence[str] | None = None) -> pa.Table:
    """All readable shards of ``directory`` as one table with :data:`SCHEMA`.

    ``columns`` reads only those columns (e.g. ``["run_id", "status"]``, which a sweep reads to
    resume: several times faster per shard than whole records). A shard that cannot be read
    (truncated, corrupt, or written under another schema) is skipped with a
    :class:`RuntimeWarning` naming it; it never stops the read.
    """
    names = list(SCHEMA.names if columns is None else columns)
    schema = pa.schema([SCHEMA.field(name) for name in names])
    wanted = list(dict.fromkeys([*names, "schema_version"]))  # a shard without it is foreign
    tables = []
    for path in record_files(directory):
        try:
            with pq.ParquetFile(path) as shard:
                table = shard.read(columns=wanted, use_threads=False)
            tables.append(table.select(names).cast(schema))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped, by design
            warnings.warn(f"skipping unreadable records file {path}: {exc}", RuntimeWarning, stacklevel=2)
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def read_records(directory: str | os.PathLike) -> list[RunRecord]:
    """All readable records of ``directory`` (see :func:`read_table`)."""
    return [RunRecord.from_dict(row) for row in read_table(directory).to_pylist()]
