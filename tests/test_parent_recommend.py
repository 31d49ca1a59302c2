"""A parent ranks unseen tasks' runs, recommends inside its tasks, falls back to the paper's rule outside."""

from __future__ import annotations

import numpy as np
import pytest

from sbrnn.child.weight_space import balance
from sbrnn.errors import SbrnnError
from sbrnn.parent.features import TaskContext
from sbrnn.parent.recommend import a_priori, configuration, extrapolation, infer_context, recommend


def test_leave_one_task_out_ranks_unseen_tasks_far_better_than_chance(synthetic_parent):
    _, report = synthetic_parent
    ranking = report["leave_one_task_out"]
    xgb = ranking["xgb"]
    assert xgb["tasks"] == 5 and xgb["median_spearman"] > 0.6
    assert xgb["median_regret"]["1"] < xgb["median_random_regret"]["1"] / 2
    assert xgb["median_percentile"] >= 0.8 and xgb["median_random_equivalent"] > 3
    assert set(ranking) == {"xgb", "ranker", "hidden_proportion"}
    band = report["band"]["xgb"]
    assert 0.6 <= band["coverage_with_floor"] <= 0.75  # widened to hold about 68% of held-out runs


def test_recommend_inside_the_tasks_ranks_by_the_parent(synthetic_parent):
    parent, _ = synthetic_parent
    task = TaskContext(20, 4, 12, "cross_entropy")
    result = recommend(parent, task, 3000, top=3, seed=2, draws=64, task_name="syn-c")
    assert (
        result.mode == "learned"
        and result.extrapolation.inside
        and result.extrapolation.nearest_task == "syn-c"
    )
    assert len(result.top) == 3 and [s.rank for s in result.top] == [1, 2, 3]
    assert len({(s.arch, s.densities) for s in result.top}) == 3
    best = result.top[0]
    assert abs(best.hidden_proportion - 0.5) < 0.2  # the synthetic optimum
    assert best.prediction.min_val_loss < result.baselines["lstm"].prediction.min_val_loss
    assert set(result.baselines) == {"dense", "uniform", "lstm"} and result.a_priori.source.startswith(
        "a-priori"
    )
    p = best.prediction
    assert p.min_low <= p.min_val_loss <= p.min_high and 0 <= p.p_converge <= 1 and len(p.curve) == 8
    command = result.train_command()
    assert command.startswith(f"sbrnn child train --task syn-c --arch {best.arch} --budget 3000")
    assert ("--densities" in command) == (best.arch == "sbrnn")
    assert result.tune_command() == "sbrnn child tune --task syn-c --budget 3000 --trials 10 --records RUNS"
    assert result.tune_command("my parent").endswith("--records RUNS --model 'my parent'")
    assert result.to_dict()["top"][0]["prediction"]["min_val_loss"] == p.min_val_loss


def test_outside_the_tasks_the_paper_rule_comes_first(synthetic_parent):
    parent, _ = synthetic_parent
    far = TaskContext(5000, 40, 300, "cross_entropy")
    result = recommend(parent, far, 400_000, top=3, draws=16)
    assert result.mode == "a-priori fallback" and not result.extrapolation.inside
    assert any("inputs 5000" in o for o in result.extrapolation.outside)
    paper = balance(5000, 40, 400_000, 0.5).spec
    assert result.top[0].densities == paper.densities and result.top[0].source.startswith("a-priori")
    assert all(s.arch == "sbrnn" for s in result.top)


def test_extrapolation_distance_and_context_from_the_nearest_task(synthetic_parent):
    parent, _ = synthetic_parent
    near = extrapolation(parent, TaskContext(8, 6, 6, "cross_entropy"), 1500)
    assert near.inside and near.distance == pytest.approx(0.0, abs=1e-9) and near.nearest_task == "syn-a"
    context, note = infer_context(parent, 3, 2)
    assert (context.steps, context.loss_kind) == (8, "mse") and "syn-b" in note and "nearest" not in note
    context, note = infer_context(parent, 38, 11)
    assert context.steps == 10 and "nearest by dims" in note
    assert infer_context(parent, 3, 2, 5, "cross_entropy") == (TaskContext(3, 2, 5, "cross_entropy"), None)


def test_configurations_and_bad_input(synthetic_parent):
    parent, _ = synthetic_parent
    dense = configuration("dense", 8, 6, 3000)
    assert dense.spec.densities == ((1.0,) * 3,) * 2 and configuration("lstm", 8, 6, 3000).spec is None
    with pytest.raises(SbrnnError, match="'gru' is unknown"):
        configuration("gru", 8, 6, 3000)
    with pytest.raises(SbrnnError, match="top = 0"):
        recommend(parent, TaskContext(8, 6, 6, "cross_entropy"), 3000, top=0)
    assert a_priori(2500, 10, 100_000)["recommended"]["sparsified_block"] == "hx"
    preds = parent.predict_configs([dense], TaskContext(8, 6, 6, "cross_entropy"))
    assert np.isfinite(preds[0].min_val_loss)


def test_balanced_family_holds_every_reachable_target_at_each_family_learning_rate():
    from sbrnn.parent.recommend import BALANCED_TARGETS, FAMILY_LRS, balanced_family

    family = balanced_family(64, 10, 20_000)
    by_shape: dict = {}
    for member in family:
        spec = member.config.spec
        assert abs(spec.hidden_proportion - float(member.source.split()[2])) <= 0.1
        by_shape.setdefault(member.source.rsplit(" lr ", 1)[0], []).append(member.config.lr)
    assert all(sorted(lrs) == sorted(FAMILY_LRS) for lrs in by_shape.values())
    assert {s.split()[1] for s in by_shape} == {"hx", "hh", "hy"}
    assert len(by_shape) <= 3 * len(BALANCED_TARGETS) and "balanced hh 0.5" in by_shape


def test_the_parent_recommends_the_lstm_at_the_rate_that_wins(synthetic_records):
    """Records where the LSTM's loss depends on its learning rate and, at 1.5e-3, beats every sparse
    run: the top-1 is the LSTM at 1.5e-3, once in the top whatever the rates beside it."""
    import dataclasses
    import math

    from sbrnn.parent.evaluate import fit_and_evaluate
    from sbrnn.parent.recommend import LSTM_LRS

    def shift(lr: float) -> float:  # log-loss change from the records' LSTM, lowest at 1.5e-3
        return -1.5 + 6.0 * math.log10(lr / 1.5e-3) ** 2

    records = []
    for record in synthetic_records(300, seed=1):
        if record.arch != "lstm":
            records.append(record)
            continue
        for i, lr in enumerate(LSTM_LRS):
            scale = math.exp(shift(lr))
            curve = [v * scale for v in record.val_loss]
            records.append(
                dataclasses.replace(
                    record,
                    run_id=f"{record.run_id}-lr{i}",
                    lr=lr,
                    label=f"lstm lr {lr:g}",
                    val_loss=curve,
                    min_val_loss=min(curve),
                )
            )
    parent, _ = fit_and_evaluate(records, ["xgb"], folds=3, trees=60, members=3, name="lstm-rates")
    result = recommend(parent, TaskContext(20, 4, 12, "cross_entropy"), 3000, top=4, draws=64)
    assert result.mode == "learned"
    assert (result.top[0].arch, result.top[0].lr) == ("lstm", 1.5e-3)
    assert [s.arch for s in result.top].count("lstm") == 1
    assert result.baselines["lstm"].lr == 1e-3  # the baseline stays at the default rate
    assert "--arch lstm" in result.train_command() and "--lr 0.0015" in result.train_command()


def test_the_lstm_rates_ranked_are_those_the_zoo_trains():
    """``LSTM_LRS`` and the zoo plan's ``lstm_lrs`` (beside the baselines' rate) name one set."""
    from pathlib import Path

    from sbrnn.child.config import RunConfig
    from sbrnn.child.sweep.plan_file import load_plan
    from sbrnn.parent.recommend import LSTM_LRS

    plan = load_plan(Path(__file__).resolve().parents[1] / "sweeps" / "zoo-v1.toml")
    swept = {rate for entry in plan.tasks for rate in entry.lstm_lrs}
    assert set(LSTM_LRS) == swept | {RunConfig.lr}
