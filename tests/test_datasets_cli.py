"""`sbrnn datasets list / build / info`: JSON shape, cache fill and reuse, preview PNG, bad input."""

import json

import pytest
from typer.testing import CliRunner

from sbrnn.cli import app

runner = CliRunner()
SMALL = ["--task-option", "n_train=48", "--task-option", "n_val=16", "--task-option", "n_test=16"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBRNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SBRNN_DATA", str(tmp_path / "data"))


def invoke(*args):
    return runner.invoke(app, list(args))


def one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


def test_list_json_has_the_zoo():
    result = invoke("datasets", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    keys = {"name", "family", "n_x", "n_y", "steps", "loss", "offline", "source", "size_on_disk"}
    for row in rows.values():
        assert keys <= set(row)
    assert (rows["rad"]["n_x"], rows["rad"]["n_y"], rows["rad"]["steps"]) == (2500, 10, 11)
    assert rows["rad28"]["n_x"] == 784 and rows["rad"]["offline"] and rows["rad28"]["offline"]
    seq = rows["seq-digits"]
    assert (seq["n_x"], seq["n_y"], seq["steps"]) == (8, 10, 8)
    assert rows["rad-mnist"]["offline"] is False  # no IDX files under $SBRNN_DATA
    offline_shapes = {(r["n_x"], r["n_y"]) for r in rows.values() if r["offline"]}
    assert len(offline_shapes) >= 5
    assert rows["rad"]["family"] == "rad" and rows["rad"]["size_on_disk"] is None  # not built here
    table = invoke("datasets", "list")
    assert table.exit_code == 0 and "rad-mnist" in table.stdout and "cross_entropy" in table.stdout
    assert "behaviour-cloning:" in table.stdout


def test_build_fills_the_cache_then_loads_it():
    first = invoke("datasets", "build", "rad28", *SMALL, "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["sizes"] == {"train": 48, "val": 16, "test": 16}
    assert summary["shapes"]["train"]["x"] == [48, 11, 784] and summary["cache"]["hit"] is False
    assert "RAD digits side 28" in first.stderr and "80/80" in first.stderr  # the generation's bar
    second = invoke("datasets", "build", "rad28", *SMALL)
    assert second.exit_code == 0, second.output
    assert "RAD" not in second.stderr  # loaded: nothing generated, no bar
    assert "loaded from" in second.stdout and summary["cache"]["key"] in second.stdout
    assert summary["traits"]["n_train"] == 48 and summary["traits"]["class_entropy"] > 0.5


def test_info_rad_writes_a_preview(tmp_path):
    target = tmp_path / "preview.png"
    result = invoke("datasets", "info", "rad", *SMALL, "--preview", str(target), "--seed", "3")
    assert result.exit_code == 0, result.output
    assert f"preview: {target}" in result.stdout and "Class balance" in result.stdout
    assert "Traits" in result.stdout and "baseline_loss" in result.stdout and "(rad)" in result.stdout
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 10_000
    data = json.loads(invoke("datasets", "info", "rad", *SMALL, "--seed", "3", "--json").stdout)
    assert [sum(data["classes"][s]) for s in ("train", "val", "test")] == [48, 16, 16]
    assert data["meta"]["generation"]["seed"] == 3 and data["meta"]["cache"]["hit"] is True
    assert data["preview"].endswith(".png") and "previews" in data["preview"]
    assert data["family"] == "rad" and data["traits"]["n_train"] == 48.0
    assert data["traits"]["target_std"] is None


def test_info_seq_digits():
    result = invoke("datasets", "info", "seq-digits", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sizes"] == {"train": 1258, "val": 270, "test": 269} and "preview" not in data
    assert all(min(counts) > 0 for counts in data["classes"].values())


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["build", "no-such-task"], "unknown task 'no-such-task'; known tasks: "),
        (["info", "no-such-task"], "rad28"),
        (["build", "rad", "--task-option", "colour=red"], "unknown option 'colour' for task rad; allowed: "),
        (["build", "rad", "--task-option", "progress=1"], "unknown option 'progress' for task rad"),
        (["build", "rad", "--task-option", "n_train=0"], "n_train 0 is not allowed"),
        (["build", "rad", "--task-option", "side=3"], "side 3 is not allowed"),
        (["build", "rad", "--task-option", "n_train"], "malformed"),
        (["build", "rad-mnist"], "train-images-idx3-ubyte"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, fragment):
    one_line_error(invoke("datasets", *args), fragment)
