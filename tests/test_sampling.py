"""The sampling space and the sweep plan: pure, deterministic, no training."""

from __future__ import annotations

import numpy as np
import pytest

from sbrnn.child import sampling
from sbrnn.child.sweep.plan import plan_sweep
from sbrnn.child.weight_space import uniform_grid
from sbrnn.errors import SbrnnError


def _draws(space: str, n: int = 3000, pins=None) -> list[sampling.Hyperparameters]:
    return [sampling.draw(sampling.run_rng(0, "toy-anomaly", 300.0, i), space, pins) for i in range(n)]


def test_paper_space_follows_method_section_6():
    draws = _draws("paper")
    d = np.array([h.densities for h in draws]).ravel()
    m = np.array([h.means for h in draws]).ravel()
    s = np.array([h.stds for h in draws]).ravel()
    lr = np.array([h.lr for h in draws])
    assert d.min() >= 0.02 and d.max() <= 1.0
    assert np.allclose(d, d.round(2)) and np.allclose(m, m.round(3))
    assert np.allclose(s[s > 1e-4], s[s > 1e-4].round(3))
    assert s.min() >= 1e-4 and lr.min() >= 1e-6
    # |N(0.5, 0.25)| clipped: mean ~0.50, the clip at 1 catches ~2.3% of draws
    assert abs(d.mean() - 0.5) < 0.01 and 0.015 < (d == 1.0).mean() < 0.032
    assert abs(m.std() - 0.0025) < 0.0002 and abs(m.mean()) < 0.0002
    assert abs(s.mean() - 0.05) < 0.001 and abs(s.std() - 0.015) < 0.001
    assert abs(lr.mean() - 1e-3) < 3e-5 and abs(lr.std() - 4e-4) < 3e-5


def test_uniform_space_covers_its_ranges_evenly():
    draws = _draws("uniform")
    d = np.array([h.densities for h in draws]).ravel()
    lr = np.array([h.lr for h in draws])
    assert d.min() >= 0.02 and d.max() <= 1.0 and np.allclose(d, d.round(2))
    counts, _ = np.histogram(d, bins=5, range=(0.02, 1.0))
    assert counts.min() > 0.8 * counts.max()
    assert 1e-4 <= lr.min() and lr.max() <= 2.2e-3


def test_pins_fix_a_value_and_leave_the_other_draws_unchanged():
    free = _draws("paper", 50)
    pins = sampling.Pins(lr=3e-3, densities=uniform_grid(0.3))
    pinned = _draws("paper", 50, pins)
    assert all(h.lr == 3e-3 and h.densities == uniform_grid(0.3) for h in pinned)
    assert [h.means for h in pinned] == [h.means for h in free]
    assert [h.stds for h in pinned] == [h.stds for h in free]
    with pytest.raises(SbrnnError, match="pinned lr"):
        sampling.Pins(lr=0)
    with pytest.raises(SbrnnError, match="space 'gauss'"):
        sampling.draw(sampling.run_rng(0), "gauss")


def test_run_generators_depend_on_seed_and_key_only():
    a = sampling.run_rng(7, "rad", 50000.0, 3).random(4)
    assert np.array_equal(a, sampling.run_rng(7, "rad", 50000.0, 3).random(4))
    for other in [(8, "rad", 50000.0, 3), (7, "rad", 50000.0, 4), (7, "toy", 50000.0, 3)]:
        assert not np.array_equal(a, sampling.run_rng(*other).random(4))


def test_plan_is_deterministic_and_labelled():
    kwargs = dict(epochs=2, seed=3, include_baselines=True, balanced=True)
    plan = plan_sweep(["toy-anomaly", "toy-regression"], [300, 500], 4, **kwargs)
    again = plan_sweep(["toy-anomaly", "toy-regression"], [300.0, 500.0], 4, **kwargs)
    assert [p.run_id for p in plan] == [p.run_id for p in again]
    assert len(plan) == 2 * 2 * (3 + 1 + 4) == len({p.run_id for p in plan})
    labels = [p.label for p in plan[:8]]
    assert labels == ["dense", "uniform", "lstm", "balanced", "random 0", "random 1", "random 2", "random 3"]
    assert {p.config.seed for p in plan} == {3}
    other_seed = plan_sweep(["toy-anomaly"], [300], 4, epochs=2, seed=4)
    assert not {p.run_id for p in other_seed} & {p.run_id for p in plan}
    # adding a task or budget leaves the runs of the others as they were
    one = plan_sweep(["toy-anomaly"], [300], 4, **kwargs)
    assert [p.run_id for p in one] == [p.run_id for p in plan[:8]]


def test_plan_refuses_bad_input():
    with pytest.raises(SbrnnError, match="unknown task 'nope'"):
        plan_sweep(["nope"], [300], 2)
    with pytest.raises(SbrnnError, match="too small"):
        plan_sweep(["toy-anomaly"], [50], 2)
    with pytest.raises(SbrnnError, match="plans no runs"):
        plan_sweep(["toy-anomaly"], [300], 0)
    with pytest.raises(SbrnnError, match="budget = -1"):
        plan_sweep(["toy-anomaly"], [-1], 2)
    # everything pinned: identical configs collapse to one run
    pins = sampling.Pins(uniform_grid(0.5), uniform_grid(0.0), uniform_grid(0.05), 1e-3)
    assert len(plan_sweep(["toy-anomaly"], [300], 5, pins=pins)) == 1
