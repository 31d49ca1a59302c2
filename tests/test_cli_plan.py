"""`sbrnn child plan` and the a-priori `sbrnn parent recommend`: JSON shape and bad input."""

import json

import pytest
from typer.testing import CliRunner

import sbrnn
from sbrnn.child import weight_space
from sbrnn.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and f"sbrnn {sbrnn.__version__}" in result.output


def test_plan_json_fig4():
    result = invoke(
        "child",
        "plan",
        "--in",
        "2500",
        "--out",
        "10",
        "--budget",
        "100000",
        "--densities",
        ".2,1,1/.2,.2,1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["hidden"] == 145
    assert plan["trainable"] == [[72500, 21025, 1450], [5000, 290, 100]]
    assert plan["densities"] == [[0.2, 1, 1], [0.2, 0.2, 1]]
    assert plan["hidden_proportion"] == pytest.approx(0.2214, abs=1e-3)
    for key in ("n_x", "n_y", "total_trainable", "model_density"):
        assert key in plan


def test_plan_table_with_hidden():
    result = invoke(
        "child", "plan", "--in", "46", "--out", "26", "--hidden", "145", "--densities", "1,.2,.2/1,1,.2"
    )
    assert result.exit_code == 0, result.output
    assert "hidden proportion" in result.output and "145x46" in result.output


def test_recommend_json():
    result = invoke("parent", "recommend", "--a-priori", "--in", "2500", "--out", "10", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    rec = out["recommended"]
    assert rec["sparsified_block"] == "hx" and 185 <= rec["hidden"] <= 195
    assert set(out["baselines"]) == {"dense", "uniform", "lstm"}
    assert out["baselines"]["dense"]["hidden"] == 29
    assert out["baselines"]["uniform"]["hidden"] == 176
    assert {"hidden", "total_trainable"} <= set(out["baselines"]["lstm"])


def test_recommend_table():
    result = invoke("parent", "recommend", "--a-priori", "--in", "46", "--out", "26", "--budget", "50000")
    assert result.exit_code == 0, result.output
    assert "block hh sparsified" in result.output and "lstm" in result.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["child", "plan", "--in", "0", "--out", "10", "--budget", "1e5"], "--in 0"),
        (["child", "plan", "--in", "10", "--out", "-2", "--budget", "1e5"], "--out -2"),
        (["child", "plan", "--in", "2500", "--out", "10", "--budget", "100"], "budget = 100"),
        (["child", "plan", "--in", "25", "--out", "1", "--budget", "1e5", "--densities", "1,x"], "malformed"),
        (["child", "plan", "--in", "25", "--out", "1", "--budget", "1e5", "--densities", "1.2"], "(0, 1]"),
        (["child", "plan", "--in", "25", "--out", "1"], "--budget"),
        (
            ["parent", "recommend", "--a-priori", "--in", "25", "--out", "1", "--target", "1.5"],
            "target = 1.5",
        ),
        (["parent", "recommend", "--a-priori", "--in", "25", "--out", "1", "--target", "0"], "target = 0"),
        (["parent", "recommend", "--in", "25", "--out", "1", "--bogus"], "--bogus"),
        (["child", "plan", "--in", "many", "--out", "1", "--budget", "10"], "--in"),
    ],
)
def test_bad_input_one_line_exit_2(args, needle):
    result = invoke(*args)
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.output


def test_ctrl_c_in_any_command_is_one_line_exit_130(monkeypatch):

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(weight_space.SparseBlockSpec, "plan", interrupted)
    result = invoke("child", "plan", "--in", "20", "--out", "3", "--hidden", "8")
    assert result.exit_code == 130 and result.output.strip() == "interrupted"
