"""The keyed cache: one build per key, atomic safetensors files, no regeneration on a hit."""

import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from sbrnn.datasets import cache, rad
from sbrnn.datasets.registry import build_task
from sbrnn.errors import SbrnnError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBRNN_CACHE", str(tmp_path / "cache"))


def test_root_follows_the_environment(tmp_path, monkeypatch):
    assert cache.cache_root() == tmp_path / "cache"
    monkeypatch.delenv("SBRNN_CACHE")
    assert str(cache.cache_root()).endswith(".cache/sbrnn")


def test_key_covers_every_parameter_and_is_order_free():
    base = {"side": 50, "n": 10, "seed": 0}
    assert cache.cache_key("rad", base) == cache.cache_key("rad", {"seed": 0, "n": 10, "side": 50})
    assert cache.cache_key("rad", base) != cache.cache_key("rad", {**base, "seed": 1})
    assert cache.cache_key("rad", base) != cache.cache_key("rad", {**base, "n": 9})
    assert cache.cache_key("rad", base) != cache.cache_key("other", base)


def test_build_once_then_load():
    calls = []

    def build():
        calls.append(1)
        return {"x": torch.arange(12, dtype=torch.uint8).view(3, 4), "y": torch.tensor([1.5, 2.5])}

    first, entry = cache.load_or_build("thing", {"a": 1}, build)
    second, again = cache.load_or_build("thing", {"a": 1}, build)
    assert len(calls) == 1 and not entry.hit and again.hit and entry.path == again.path
    assert entry.path.suffix == ".safetensors" and entry.path.parent.name == "thing"
    assert torch.equal(first["x"], second["x"]) and second["x"].dtype == torch.uint8
    assert cache.stored_params(entry.path) == {"a": 1}
    assert set(load_file(entry.path)) == {"x", "y"}  # a plain safetensors file
    assert not list(entry.path.parent.glob("*.tmp"))


def test_failed_build_leaves_nothing():
    def build():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.load_or_build("thing", {"a": 2}, build)
    path = cache.path_for("thing", {"a": 2})
    assert not path.exists() and not list(path.parent.glob("*.tmp"))


def test_concurrent_callers_build_once():
    calls = []

    def build():
        calls.append(1)
        time.sleep(0.3)
        return {"x": torch.zeros(2)}

    entries = []
    threads = [
        threading.Thread(target=lambda: entries.append(cache.load_or_build("t", {}, build)[1]))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(e.hit for e in entries) == [False, True, True]


def test_second_rad_build_loads_without_generating(monkeypatch):
    options = {"side": 28, "n_train": 40, "n_val": 16, "n_test": 16}
    first = build_task("rad28", seed=7, **options)
    assert first.meta["cache"]["hit"] is False

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(rad, "generate_split", no_generation)
    second = build_task("rad28", seed=7, **options)
    assert second.meta["cache"]["hit"] is True
    assert second.meta["cache"]["path"] == first.meta["cache"]["path"]
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test.y, second.test.y)
    stored = load_file(first.meta["cache"]["path"])
    assert stored["train/images"].dtype == torch.uint8  # compact: one byte per pixel
    with pytest.raises(AssertionError, match="generated again"):
        build_task("rad28", seed=8, **options)


def test_builds_report_progress_only_to_a_callback(capsys):
    options = {"side": 16, "n_train": 24, "n_val": 8, "n_test": 8}
    assert build_task("rad28", seed=3, **options).meta["cache"]["hit"] is False
    assert capsys.readouterr().err == ""  # generated with no callback: nothing drawn
    calls = []
    reported = build_task("rad28", seed=4, progress=lambda *call: calls.append(call), **options)
    assert calls[0] == ("RAD digits side 16", 0, 40) and calls[-1] == ("RAD digits side 16", 40, 40)
    done = [d for _, d, _ in calls]
    assert done == sorted(done) and {total for *_, total in calls} == {40}
    assert capsys.readouterr().err == ""
    # not an option: the same key with or without it, and a load has nothing to report
    calls.clear()
    again = build_task("rad28", seed=4, progress=lambda *call: calls.append(call), **options)
    assert calls == [] and again.meta["cache"] == {**reported.meta["cache"], "hit": True}
    assert build_task("toy-regression", progress=lambda *call: calls.append(call)).traits and calls == []
    with pytest.raises(SbrnnError, match="unknown option 'progress' for task rad28"):
        build_task("rad28", progress=1, **options)
