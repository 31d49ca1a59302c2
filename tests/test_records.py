"""The record schema on disk: schema-1 files still read, compaction loses nothing, one row per run."""

import json
import logging

import pyarrow as pa
import pytest

from sbrnn.child import kernels
from sbrnn.child.config import RunConfig
from sbrnn.child.sweep.coordinator import pending_runs
from sbrnn.child.sweep.plan import plan_sweep
from sbrnn.child.train import train_run
from sbrnn.records import (
    SCHEMA,
    RunRecord,
    compact,
    compacted_name,
    read_records,
    read_table,
    record_files,
    records_table,
    write_atomic,
    write_record,
)

V2_ONLY = ("task_family", "task_options", "kernel_path", "threads", "origin", "label", "study", "trial")


def record(run_id, task="toy-anomaly", status="ok", loss=1.0, created_at=None):
    extra = {"created_at": created_at} if created_at else {}
    return RunRecord(
        run_id=run_id,
        task=task,
        n_x=8,
        n_y=6,
        steps=6,
        loss_kind="cross_entropy",
        arch="sbrnn",
        h=10,
        lr=1e-3,
        batch_size=16,
        epochs=2,
        seed=0,
        status=status,
        val_loss=[loss],
        min_val_loss=loss,
        **extra,
    )


def test_schema_1_files_read_with_the_new_columns_null(tmp_path):
    v1_names = [n for n in SCHEMA.names if n not in V2_ONLY and not n.startswith("trait_")]
    row = record("a" * 16).to_dict()
    row["schema_version"] = 1
    v1 = pa.schema([SCHEMA.field(n) for n in v1_names])
    table = pa.Table.from_pylist([{k: row[k] for k in v1_names}], schema=v1)
    write_atomic(table, tmp_path / "old.parquet")
    write_record(record("b" * 16), tmp_path)
    back = {r.run_id: r for r in read_records(tmp_path)}
    assert back["a" * 16].schema_version == 1 and back["a" * 16].kernel_path is None
    assert back["a" * 16].min_val_loss == 1.0 and back["b" * 16].schema_version == 2


def test_compaction_merges_shards_per_task_and_resume_sees_every_run(tmp_path):
    plan = plan_sweep(["toy-anomaly", "toy-regression"], [500], 3, epochs=1)
    for p in plan:
        write_record(record(p.run_id, task=p.config.task), tmp_path)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.warns(RuntimeWarning, match="junk.parquet"):
        before = read_table(tmp_path)
        done = compact(tmp_path)
    assert done.runs == 6 and done.files_removed == 6
    assert sorted(done.written) == [compacted_name("toy-anomaly"), compacted_name("toy-regression")]
    names = sorted(p.name for p in record_files(tmp_path))
    assert names == sorted([*done.written, "junk.parquet"])  # the unreadable file is left alone
    with pytest.warns(RuntimeWarning):
        after = read_table(tmp_path)
        assert pending_runs(plan, tmp_path) == []
    assert sorted(after.column("run_id").to_pylist()) == sorted(before.column("run_id").to_pylist())
    # compacting again, with a new shard, keeps everything once
    (tmp_path / "junk.parquet").unlink()
    write_record(record("c" * 16), tmp_path)
    again = compact(tmp_path)
    assert again.runs == 7 and len(record_files(tmp_path)) == 2


def test_a_run_found_twice_keeps_its_newest_row(tmp_path):
    old = record("d" * 16, status="failed", created_at="2026-01-01T00:00:00+00:00")
    new = record("d" * 16, loss=0.5, created_at="2026-02-01T00:00:00+00:00")
    write_atomic(records_table([new, record("e" * 16)]), tmp_path / "toy-anomaly.parquet")
    write_record(old, tmp_path)  # e.g. a compaction interrupted before removing the shard
    back = {r.run_id: r for r in read_records(tmp_path)}
    assert len(back) == 2 and back["d" * 16].status == "ok" and back["d" * 16].min_val_loss == 0.5


def test_foreign_parquet_and_unknown_versions_are_skipped_with_a_warning(tmp_path):
    write_record(record("f" * 16), tmp_path)
    write_atomic(pa.table({"x": [1, 2]}), tmp_path / "foreign.parquet")
    future = record("9" * 16).to_dict()
    future["schema_version"] = 99
    write_atomic(pa.Table.from_pylist([future], schema=SCHEMA), tmp_path / "future.parquet")
    with pytest.warns(RuntimeWarning) as caught:
        ids = read_table(tmp_path, columns=["run_id", "status"]).column("run_id").to_pylist()
    assert ids == ["f" * 16]
    skipped = {w.message.args[0].split("/")[-1].split(":")[0] for w in caught}
    assert {"foreign.parquet", "future.parquet"} <= skipped


def test_the_record_names_the_kernel_path_threads_and_task_options(one_thread):
    options = {"n_x": 600, "n_train": 32, "n_val": 16, "n_test": 16}
    sparse = RunConfig(
        task="toy-anomaly",
        task_options=options,
        hidden=120,
        budget=None,
        densities=((0.05, 1, 1), (1, 1, 1)),
        epochs=1,
    )
    lstm = RunConfig(task="toy-anomaly", task_options=options, arch="lstm", budget=5000, epochs=1)
    first, second = train_run(sparse, threads=1), train_run(lstm, threads=1)
    expected = "sparse-x+compiled-recurrence" if kernels.library() is not None else "dense-x+torch-recurrence"
    if kernels.library() is not None and kernels.variant() == "portable":
        expected += " [portable]"
    assert first.kernel_path == expected and second.kernel_path == "torch"
    assert first.threads == 1 and json.loads(first.task_options) == options


def test_without_kernels_the_record_says_torch_ops_and_one_warning_names_why(
    monkeypatch, tmp_path, caplog, one_thread
):
    monkeypatch.setenv("CC", f"{tmp_path}/no-such-cc -w")
    monkeypatch.delenv("SBRNN_REQUIRE_KERNELS", raising=False)
    kernels.library.cache_clear()
    try:
        options = {"n_x": 600, "n_train": 32, "n_val": 16, "n_test": 16}
        config = RunConfig(
            task="toy-anomaly",
            task_options=options,
            hidden=120,
            budget=None,
            densities=((0.05, 1, 1), (1, 1, 1)),
            epochs=1,
        )
        with caplog.at_level(logging.WARNING, logger="sbrnn.child.kernels"):
            runs = [train_run(config), train_run(config)]
        assert [r.kernel_path for r in runs] == ["dense-x+torch-recurrence"] * 2
        warned = [r.getMessage() for r in caplog.records if r.name == "sbrnn.child.kernels"]
        assert len(warned) == 1 and "no-such-cc" in warned[0] and "torch ops" in warned[0]
    finally:
        monkeypatch.undo()
        kernels.library.cache_clear()


def test_required_kernels_fail_loudly_and_cc_with_arguments_builds(monkeypatch, tmp_path):
    monkeypatch.setenv("SBRNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SBRNN_REQUIRE_KERNELS", "1")
    monkeypatch.setenv("CC", "/bin/false")
    kernels.library.cache_clear()
    try:
        with pytest.raises(kernels.KernelsUnavailable, match="false"):
            kernels.library()
        monkeypatch.setenv("CC", "gcc -w")  # a compiler with arguments, split like a shell would
        kernels.library.cache_clear()
        assert kernels.library() is not None, kernels.library_error()
    finally:
        monkeypatch.undo()
        kernels.library.cache_clear()


def test_records_carry_the_task_family_and_traits(one_thread):
    from sbrnn.datasets.registry import build_task
    from sbrnn.datasets.traits import TRAIT_NAMES
    from sbrnn.records import TRAITS

    assert TRAITS == TRAIT_NAMES
    options = {"n_train": 40, "n_val": 16, "n_test": 16}
    run = train_run(RunConfig(task="toy-regression", task_options=options, budget=400, epochs=1))
    task = build_task("toy-regression", **options)
    assert run.task_family == "synthetic" and run.trait_n_train == 40.0
    for name in TRAITS:
        assert getattr(run, f"trait_{name}") == task.traits[name]
    assert run.trait_class_entropy is None and run.trait_baseline_loss > 0
