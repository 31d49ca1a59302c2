"""Fixtures shared by the test modules; the suite's own sbrnn cache."""

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch


def pytest_configure(config):
    """Everything the suite caches (task data, compiled kernels) goes to a temporary folder, never
    to the user's ``$SBRNN_CACHE``; tests that need their own set it again."""
    config.sbrnn_cache = tempfile.mkdtemp(prefix="sbrnn-test-cache-")
    os.environ["SBRNN_CACHE"] = config.sbrnn_cache


def pytest_unconfigure(config):
    shutil.rmtree(config.sbrnn_cache, ignore_errors=True)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def imported_benchmark(name: str):
    """Yield ``benchmarks/NAME.py`` as a module, registered in ``sys.modules`` while in use (its
    dataclasses need it) and removed after: the body of a module-scoped fixture."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[name]


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is faster and immune to a busy machine's oversubscription.
    Torch's thread count is process-wide (``--threads`` and in-process runs set it), so it is
    restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def offline_minari(tmp_path_factory):
    """A private Minari path and sbrnn cache, and no Hugging Face network, for a whole module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
        mp.setenv("SBRNN_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


SYNTHETIC_TASKS = {  # name: n_x, n_y, steps, loss kind, offset of the relative log minimum
    "syn-a": (8, 6, 6, "cross_entropy", -1.0),
    "syn-b": (3, 2, 8, "mse", -2.0),
    "syn-c": (20, 4, 12, "cross_entropy", -0.5),
    "syn-d": (40, 10, 10, "mse", -1.5),
    "syn-e": (12, 3, 6, "cross_entropy", -0.8),
}
SYNTHETIC_EPOCHS = 12


def synthetic_relative_min(task: str, hidden_proportion: float, model_density: float, arch: str) -> float:
    """The known relation of the synthetic records: ``log(min / baseline)`` is the task's offset plus
    ``6 (hidden proportion - 0.5)^2 + (1 - model density)``; the LSTM sits 0.8 above the offset."""
    offset = SYNTHETIC_TASKS[task][4]
    if arch == "lstm":
        return offset + 0.8
    return offset + 6.0 * (hidden_proportion - 0.5) ** 2 + (1.0 - model_density)


def make_synthetic_records(
    n: int, seed: int = 0, tasks=tuple(SYNTHETIC_TASKS), noise: float = 0.02, budgets=(1500.0, 3000.0)
):
    """``n`` run records with the known relation of :func:`synthetic_relative_min`: per task and
    budget the dense, uniform and LSTM baselines, then draws of the paper's sweep space (labelled
    ``random i``); curves decay towards the minimum, a third stop early, and configurations with a
    hidden proportion above 0.9 mostly diverge."""
    import math

    import numpy as np

    from sbrnn.child.sampling import draw
    from sbrnn.child.weight_space import SparseBlockSpec, baselines, grid_blocks, lstm_hidden, lstm_weights
    from sbrnn.records import RunRecord
    from sbrnn.vocabulary import BLOCKS

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        n_x, n_y, steps, loss, _ = SYNTHETIC_TASKS[task]
        budget = float(budgets[(i // len(tasks)) % len(budgets)])
        slot = i // (len(tasks) * len(budgets))
        baseline = math.log(n_y) if loss == "cross_entropy" else 1.0
        traits = {
            "trait_baseline_loss": baseline,
            "trait_n_train": 500.0,
            "trait_input_std": 1.0,
            "trait_class_entropy": 1.0 if loss == "cross_entropy" else None,
        }
        common = dict(
            run_id=f"s{seed}-{i:05d}",
            task=task,
            n_x=n_x,
            n_y=n_y,
            steps=steps,
            loss_kind=loss,
            batch_size=16,
            epochs=SYNTHETIC_EPOCHS,
            seed=0,
            budget=budget,
            **traits,
        )
        label, arch = (
            ("dense", "dense")
            if slot == 0
            else ("lstm", "lstm")
            if slot == 1
            else (f"random {slot}", "sbrnn")
        )
        if arch == "lstm":
            h = lstm_hidden(n_x, n_y, budget)
            rel, lr = synthetic_relative_min(task, 0.0, 1.0, "lstm"), 1e-3
            fields = dict(arch="lstm", h=h, lr=lr, trainable_total=lstm_weights(n_x, n_y, h))
        else:
            if arch == "dense":
                spec, lr = baselines(n_x, n_y, budget)["dense"], 1e-3
            else:
                hp = draw(rng)
                spec, lr = (
                    SparseBlockSpec.from_budget(n_x, n_y, budget, hp.densities, hp.means, hp.stds),
                    hp.lr,
                )
            counts = [round(t) for row in spec.expected_trainable for t in row]
            rel = synthetic_relative_min(task, spec.hidden_proportion, spec.model_density, arch)
            fields = dict(
                arch=arch,
                h=spec.h,
                lr=lr,
                trainable_total=sum(counts),
                hidden_proportion=spec.hidden_proportion,
                model_density=spec.model_density,
                **{f"d_{b}": v for b, v in grid_blocks(spec.densities).items()},
                **{f"mu_{b}": v for b, v in grid_blocks(spec.means).items()},
                **{f"sigma_{b}": v for b, v in grid_blocks(spec.stds).items()},
                **{f"trainable_{b}": c for b, c in zip(BLOCKS, counts)},
            )
        curve = [
            baseline * math.exp(rel + math.exp(-e / 1.5) + noise * rng.normal())
            for e in range(SYNTHETIC_EPOCHS)
        ]
        status = "ok"
        if rng.random() < 0.3:
            curve = curve[: int(rng.integers(9, SYNTHETIC_EPOCHS))]
        if (fields.get("hidden_proportion") or 0) > 0.9 and rng.random() < 0.7:
            status, curve = "diverged", curve[:2] + [float("nan")]
        out.append(
            RunRecord(
                **common,
                **fields,
                status=status,
                val_loss=curve,
                label=label,
                min_val_loss=min(curve) if status == "ok" else None,
            )
        )
    return out


@pytest.fixture(scope="session")
def synthetic_records():
    """:func:`make_synthetic_records`, for the parent tests."""
    return make_synthetic_records


@pytest.fixture(scope="session")
def synthetic_parent():
    """A parent (xgb, few rounds) and its report, fitted once on 300 synthetic records of 5 tasks."""
    from sbrnn.parent.evaluate import fit_and_evaluate

    return fit_and_evaluate(
        make_synthetic_records(300, seed=1), ["xgb"], folds=3, trees=60, members=3, name="synthetic"
    )
