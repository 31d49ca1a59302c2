"""The CLI's one renderer: cells, whole values in narrow terminals and pipes, JSON of the same rows."""

import json
import subprocess
import sys
from dataclasses import asdict, dataclass

import pytest
from typer.testing import CliRunner

from sbrnn.cli import app
from sbrnn.cli.render import Column, number, render, render_fields, render_grid

RUN_ID = "0123456789abcdef"
TASK = "inverted-double-pendulum-dynamics"
NOTE = "a free text note that is long enough to be wrapped between its words in a narrow terminal"


@dataclass(frozen=True)
class Row:
    run_id: str
    task: str
    budget: float
    loss: float | None
    note: str

    def to_dict(self) -> dict:
        return asdict(self)


ROWS = [Row(RUN_ID, TASK, 123456.0, 0.123456, NOTE), Row("fedcba9876543210", "rad", 5e4, None, "short")]
COLUMNS = (
    Column("run_id", "run id"),
    Column("task"),
    number("budget", fmt=",.0f"),
    number("loss", "val loss", ".4f"),
    Column("note", fold=True),
)


@pytest.fixture
def narrow(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")


def test_cells():
    assert Column("x").cell(None) == "-" and Column("x", fmt=".2f").cell("text") == "text"
    assert number("x", fmt=",.0f").cell(1234.5) == "1,234" and Column("x", fmt=str.upper).cell("a") == "A"
    assert Column("x", fmt=".1f").cell(True) == "True" and number("x").justify == "right"


def test_a_wide_table_in_a_narrow_terminal_keeps_ids_names_and_numbers_whole(narrow, capsys):
    render(ROWS, COLUMNS, title="runs")
    out = capsys.readouterr().out
    for whole in (RUN_ID, TASK, "123,456", "0.1235", "val loss", "fedcba9876543210"):
        assert whole in out, whole
    assert all(word in out for word in NOTE.split())  # free text wraps between words only
    assert NOTE not in out and max(len(line) for line in out.splitlines()) < len(NOTE) + len(TASK)


def test_json_is_the_same_rows(capsys):
    render(ROWS, COLUMNS, json_out=True, title="ignored")
    assert json.loads(capsys.readouterr().out) == [row.to_dict() for row in ROWS]


def test_groups_head_sections(capsys):
    rows = [{"family": "a", "name": "x1"}, {"family": "a", "name": "x2"}, {"family": "b", "name": "y"}]
    render(rows, group="family")
    out = capsys.readouterr().out
    assert out.index("a:") < out.index("x2") < out.index("b:") < out.index(" y ")
    assert "family" not in out


def test_fields_and_grid(narrow, capsys):
    render_fields([("run", RUN_ID), ("task", TASK), ("status", f"failed: {NOTE}")], title="Run")
    render_grid(
        {"x": 2500, "h": 145, "y": 10},
        [["a\n72,500 trainable", "b", "c"], ["d", "e", "f"]],
        title="grid",
        caption="h = 145",
    )
    out = capsys.readouterr().out
    assert RUN_ID in out and TASK in out and "x (2500)" in out and "72,500 trainable" in out
    assert "h = 145" in out


def test_a_cli_table_in_a_pipe_of_40_columns():
    result = CliRunner().invoke(app, ["datasets", "list"], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    assert TASK in result.stdout and "cross_entropy" in result.stdout


def test_importing_the_cli_imports_no_torch():
    code = "import sys, sbrnn.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
