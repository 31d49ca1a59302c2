"""Weight-space arithmetic against the paper's figures, plus properties over random shapes."""

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbrnn.child.weight_space import (
    DENSITY_GRID,
    SparseBlockSpec,
    balance,
    baselines,
    grid_from_blocks,
    hidden_from_budget,
    lstm_weights,
    parse_grid,
)
from sbrnn.errors import SbrnnError

RAD = (2500, 10)


@pytest.mark.parametrize(
    "densities, h, proportion",
    [
        ("1", 29, 0.011),
        (".2", 176, 0.066),
        (".2,1,1/.2,.2,1", 145, 0.22),
        ("1,.2,.2/1,1,.2", 30, 0.0024),
        (".08,1,1/1,1,1", 185, 0.47),
        (".1,1,1/.1,.1,.1", 208, 0.44),
    ],
)
def test_paper_figures(densities, h, proportion):
    spec = SparseBlockSpec.from_budget(*RAD, 100_000, parse_grid(densities, "densities"))
    assert spec.h == h
    assert spec.hidden_proportion == pytest.approx(proportion, abs=0.01 if proportion > 0.1 else 0.001)


def test_fig4_counts():
    spec = SparseBlockSpec(2500, 10, 145, parse_grid(".2,1,1/.2,.2,1", "d"))
    assert [round(t) for t in spec.expected_trainable[0]] == [72_500, 21_025, 1_450]
    assert [round(t) for t in spec.expected_trainable[1]] == [5_000, 290, 100]
    assert spec.dense_total == 155 * 2655
    assert spec.model_density == pytest.approx(spec.total_trainable / spec.dense_total)


def test_balanced_rad():
    result = balance(*RAD, 100_000)
    assert result.block == "hx"
    assert 0.07 <= result.spec.density("hx") <= 0.08
    assert 185 <= result.spec.h <= 195
    assert 0.46 <= result.achieved <= 0.53
    assert all(result.spec.density(b) == 1.0 for b in ("hh", "hy", "yx", "yh", "yy"))


def test_balanced_adroit_sparsifies_hh():
    result = balance(46, 26, 100_000, target=0.5)
    assert result.block == "hh"
    assert abs(result.achieved - 0.5) <= 0.03
    assert result.spec.density("hx") == 1.0


def test_balance_with_pinned_row():
    result = balance(*RAD, 100_000, pinned={"yx": 0.2, "yh": 0.2, "yy": 0.2})
    assert result.spec.densities[1] == (0.2, 0.2, 0.2)
    assert result.block == "hx"
    assert abs(result.achieved - 0.5) < 0.03


def test_balance_forced_block_and_errors():
    assert balance(*RAD, 100_000, block="hh").block == "hh"
    with pytest.raises(SbrnnError, match="target"):
        balance(*RAD, 100_000, target=1.0)
    with pytest.raises(SbrnnError, match="pinned"):
        balance(*RAD, 100_000, pinned={"hx": 0.1}, block="hx")
    with pytest.raises(SbrnnError, match="every h-row block is pinned"):
        balance(*RAD, 100_000, pinned={"hx": 0.1, "hh": 1, "hy": 1})


def test_budget_too_small_is_an_error_not_a_negative_h():
    with pytest.raises(SbrnnError, match="too small"):
        hidden_from_budget(2500, 10, 25_000, parse_grid("1", "d"))
    assert hidden_from_budget(2500, 10, 25_000, parse_grid(".2", "d")) >= 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_x": 0}, "n_x"),
        ({"h": -3}, "h"),
        ({"densities": ((0, 1, 1), (1, 1, 1))}, "block hx"),
        ({"densities": ((1, 1, 1), (1, 1, 1.5))}, "block yy"),
        ({"stds": ((1, 1, -0.1), (1, 1, 1))}, "block hy"),
        ({"densities": ((1, 1), (1, 1))}, "2x3"),
    ],
)
def test_validation_names_the_field(kwargs, match):
    base = {"n_x": 4, "n_y": 2, "h": 3}
    with pytest.raises(SbrnnError, match=match):
        SparseBlockSpec(**{**base, **kwargs})


@pytest.mark.parametrize("text", ["", "a", "1,2", "1,1,1/1,1", "1,1,1/1,1,1/1,1,1"])
def test_parse_grid_rejects_malformed(text):
    with pytest.raises(SbrnnError, match="malformed"):
        parse_grid(text, "densities")


def test_baselines_near_budget():
    base = baselines(*RAD, 100_000)
    assert base["dense"].h == 29 and base["uniform"].h == 176
    for key in ("dense", "uniform"):
        assert abs(base[key].total_trainable - 100_000) / 100_000 < 0.02
    lstm = base["lstm"]
    assert lstm["total_trainable"] == lstm_weights(*RAD, lstm["hidden"])
    assert abs(lstm["total_trainable"] - 100_000) / 100_000 < 0.02


def test_spec_module_does_not_import_torch():
    code = "import sys, sbrnn.child.weight_space, sbrnn.parent.recommend; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


densities = st.sampled_from(DENSITY_GRID)
dims = st.integers(1, 3000)


@settings(max_examples=200, deadline=None)
@given(
    n_x=dims,
    n_y=st.integers(1, 60),
    d=st.lists(densities, min_size=6, max_size=6),
    budget=st.floats(1e3, 1e6),
)
def test_solved_h_within_one_h_row_of_budget(n_x, n_y, d, budget):
    grid = (tuple(d[:3]), tuple(d[3:]))
    try:
        h = hidden_from_budget(n_x, n_y, budget, grid)
    except SbrnnError:
        spec = SparseBlockSpec(n_x, n_y, 1, grid)
        assert spec.total_trainable > budget - 0.5 * spec.expected_trainable[0][1]
        return
    spec = SparseBlockSpec(n_x, n_y, h, grid)
    # one h-row: the trainable weights one more hidden unit adds (its row and its column)
    row = d[0] * n_x + d[1] * (2 * h + 1) + d[2] * n_y + d[4] * n_y
    assert abs(spec.total_trainable - budget) <= row


@settings(max_examples=60, deadline=None)
@given(
    n_x=st.integers(1, 3000), n_y=st.integers(1, 50), budget=st.floats(2e4, 3e5), target=st.floats(0.1, 0.9)
)
def test_balance_is_best_on_the_two_decimal_grid(n_x, n_y, budget, target):
    try:
        result = balance(n_x, n_y, budget, target)
    except SbrnnError:
        return  # the budget cannot hold the y row: a user error, checked elsewhere
    gap = abs(result.achieved - target)
    for d in DENSITY_GRID:
        grid = grid_from_blocks({result.block: d}, 1.0)
        other = SparseBlockSpec.from_budget(n_x, n_y, budget, grid)
        assert gap <= abs(other.hidden_proportion - target) + 1e-12
    assert not math.isnan(result.achieved)
