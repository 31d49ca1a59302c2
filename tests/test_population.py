"""Population training equals training the same configs one by one, child by child."""

import math

import pytest
import torch

from sbrnn.child import kernels
from sbrnn.child import population as population_module
from sbrnn.child.config import RunConfig
from sbrnn.child.model import build_model
from sbrnn.child.population import (
    PopulationAdam,
    SparseBlockPopulation,
    population_jobs,
    population_key,
    train_population,
)
from sbrnn.child.train import member_losses, train_run

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"n_train": 192, "n_val": 64, "n_test": 64}
COMMON = dict(task="toy-anomaly", task_options=SMALL, batch_size=32, seed=4)


def close(a, b, tol=2e-4):
    return all(math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(a, b)) and len(a) == len(b)


def test_population_records_equal_one_by_one_records():
    configs = [
        RunConfig(budget=1500, lr=1e-2, epochs=3, **COMMON),
        RunConfig(budget=900, densities=((0.3, 1, 1), (1, 0.5, 1)), lr=4e-3, epochs=2, **COMMON),
        RunConfig(arch="uniform", budget=700, lr=0.3, epochs=4, patience=1, **COMMON),  # stops early
        RunConfig(arch="lstm", budget=1500, lr=1e-2, epochs=2, **COMMON),  # trains alone
    ]
    together = train_population(configs)
    alone = [train_run(c) for c in configs]
    assert len({r.h for r in together[:3]}) == 3  # padded to the largest h
    assert together[2].best_epoch == 2 and len(together[2].val_loss) == 3  # stopped early, on its own
    for a, b in zip(together, alone):
        assert a.run_id == b.run_id and a.status == b.status == "ok", (a.error, b.error)
        assert (a.h, a.trainable_total, a.best_epoch, a.hidden_proportion) == (
            b.h,
            b.trainable_total,
            b.best_epoch,
            b.hidden_proportion,
        )
        assert close(a.train_loss, b.train_loss) and close(a.val_loss, b.val_loss)
        assert close(a.val_acc, b.val_acc) and close([a.test_loss], [b.test_loss])
        assert a.wall_seconds > 0


def test_a_diverging_child_leaves_without_touching_the_others():
    good = RunConfig(budget=1500, lr=1e-2, epochs=2, **COMMON)
    bad = RunConfig(budget=900, lr=1e6, epochs=2, stds=((3, 3, 3), (3, 3, 3)), **COMMON)
    together = train_population([good, bad])
    assert together[1].status == train_run(bad).status == "diverged"
    assert together[0].status == "ok" and close(together[0].val_loss, train_run(good).val_loss)


def train_side_by_side(models, configs, batch, steps, seed):
    """Four Adam steps of a population of ``models`` and of each model alone on the same batches;
    asserts the children's weights agree and returns the population."""
    population = SparseBlockPopulation(models)
    optimizer = PopulationAdam(population, [c.lr for c in configs])
    singles = [torch.optim.Adam(m.parameters(), lr=c.lr, fused=True) for m, c in zip(models, configs)]
    n_x, n_y = models[0].n_x, models[0].n_y
    g = torch.Generator().manual_seed(seed)
    for _ in range(4):
        x, y = torch.randn(batch, steps, n_x, generator=g), torch.randint(0, n_y, (batch,), generator=g)
        optimizer.zero_grad()
        member_losses(population(x), y, "cross_entropy").sum().backward()
        optimizer.step()
        for model, opt in zip(models, singles):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x)[:, -1], y).backward()
            opt.step()
    for i, model in enumerate(models):
        state = population.child_state(i)
        for name in ("weight_x", "weight_s", "bias"):
            torch.testing.assert_close(state[name], getattr(model, name).detach(), rtol=1e-5, atol=1e-6)
        assert torch.all(state["weight_x"][state["mask_x"] == 0] == 0)
    assert torch.all(population.weight_s[population.mask_s == 0] == 0)
    return population


def test_population_adam_is_torch_adam_per_child():
    configs = [RunConfig(budget=300, seed=s, lr=lr) for s, lr in ((0, 1e-2), (1, 3e-3))]
    train_side_by_side([build_model(c, 6, 4)[0] for c in configs], configs, batch=8, steps=5, seed=0)


@pytest.mark.skipif(kernels.library() is None, reason=str(kernels.library_error()))
def test_a_sparse_population_projects_over_kept_entries_and_equals_one_by_one(monkeypatch):
    monkeypatch.setattr(population_module, "SPARSE_X_MIN_ENTRIES", 0)  # small sizes, same rule
    configs = [
        RunConfig(budget=2000, densities=((0.1, 1, 1), (0.2, 1, 1)), seed=0, lr=1e-2),
        RunConfig(budget=1200, densities=((0.05, 0.5, 1), (0.3, 1, 1)), seed=1, lr=3e-3),
    ]
    models = [build_model(c, 40, 3, path="sparse")[0] for c in configs]
    assert SparseBlockPopulation(models).x_pattern() is not None  # low-density stacked x columns
    population = train_side_by_side(models, configs, batch=37, steps=5, seed=1)
    population.keep([1])  # a child leaves: the pattern follows the shrunk stack
    assert population.x_pattern().shape == (population.mask_x.shape[1], 40)
    monkeypatch.setattr(population_module, "SPARSE_X_MAX_DENSITY", 0.01)
    population.keep([0])
    assert population.x_pattern() is None  # above the density rule: masked-dense


def test_a_child_that_stays_keeps_its_weights_and_moments_when_others_leave():
    """The stacked x columns are compact: each child holds one contiguous range of ``values_x``
    (and of its moments), and ``keep`` carries a staying child's entries to the shrunk stack."""
    configs = [RunConfig(budget=b, seed=s, lr=1e-2) for s, b in ((0, 900), (1, 400), (2, 600))]
    models = [build_model(c, 12, 4)[0] for c in configs]
    population = SparseBlockPopulation(models)
    optimizer = PopulationAdam(population, [c.lr for c in configs])
    assert population.values_x.shape == (sum(int(m.mask_x.sum()) for m in models),)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        x, y = torch.randn(8, 5, 12, generator=g), torch.randint(0, 4, (8,), generator=g)
        optimizer.zero_grad()
        member_losses(population(x), y, "cross_entropy").sum().backward()
        optimizer.step()
    before = population.child_state(2)
    moment = population.child_part("values_x", optimizer.exp_avg["values_x"], 2).clone()
    assert moment.shape == (int(models[2].mask_x.sum()),) and moment.abs().sum() > 0
    optimizer.keep([2])
    after = population.child_state(0)
    for name in ("weight_x", "weight_s", "bias", "mask_x"):
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert torch.equal(optimizer.exp_avg["values_x"], moment)


def test_population_key_groups_only_compatible_configs():
    base = RunConfig(**COMMON)
    assert population_key(base) == population_key(RunConfig(lr=5e-3, budget=2000, arch="dense", **COMMON))
    assert population_key(RunConfig(arch="lstm", **COMMON)) is None
    assert population_key(base) != population_key(RunConfig(**{**COMMON, "seed": 5}))
    assert population_key(base) != population_key(RunConfig(**{**COMMON, "batch_size": 16}))


def test_child_sweep_population_end_to_end_equals_one_by_one(tmp_path):
    from typer.testing import CliRunner

    from sbrnn.cli import app
    from sbrnn.records import read_records

    def invoke(records, *extra):
        args = [
            "child",
            "sweep",
            "--task",
            "toy-anomaly",
            "--runs",
            "4",
            "--budget",
            "400",
            "--epochs",
            "2",
            "--seed",
            "3",
            "--batch-size",
            "32",
            "--include-baselines",
            "--records",
            str(records),
            "--json",
            *extra,
        ]
        return CliRunner().invoke(app, args)

    def sweep(records, *extra):
        result = invoke(records, *extra)
        assert result.exit_code == 0, result.output
        return {r.run_id: r for r in read_records(records)}

    together = sweep(tmp_path / "population", "--population", "4")
    alone = sweep(tmp_path / "alone")
    assert set(together) == set(alone) and len(together) == 7  # 4 draws, dense, uniform, lstm
    for run_id, a in together.items():
        b = alone[run_id]
        assert a.status == b.status == "ok" and a.h == b.h
        assert close(a.val_loss, b.val_loss) and close(a.train_loss, b.train_loss)
    again = invoke(tmp_path / "population", "--population", "4")
    assert again.exit_code == 0 and '"finished": 0' in again.stdout  # resumes: nothing left to run
    bad = invoke(tmp_path / "bad", "--population", "0")
    assert bad.exit_code == 2
    assert bad.stderr.strip() == "error: --population 0 is out of range; allowed: integers >= 1"


def test_population_jobs_group_compatible_configs_by_hidden_size():
    # toy-anomaly: budgets 900 / 1000 / 1100 / 1200 / 2000 / 300 give h 24 / 27 / 30 / 33 / 56 / 9
    configs = [RunConfig(budget=b, **COMMON) for b in (2000, 1100, 1200, 900, 1000, 300)]
    configs.insert(2, RunConfig(arch="lstm", budget=900, **COMMON))

    def budgets(size):
        return [[int(c.budget) for c in job] for job in population_jobs(configs, size)]

    # sorted by h; a new job when the job is full or h passes 1.25x the job's first
    assert budgets(2) == [[300], [900, 1000], [1100, 1200], [2000], [900]]  # 24 > 1.25 x 9, 56 > 1.25 x 30
    assert budgets(3) == [[300], [900, 1000, 1100], [1200], [2000], [900]]  # 33 > 1.25 x 24 = 30
    assert population_jobs(configs, 2)[4][0].arch == "lstm"
    assert sum(len(j) for j in population_jobs(configs, 1)) == 7
