"""The child on CUDA: same masks, forward, gradients and curves as on the CPU; picked by default.

Skipped where no CUDA device is present (CI); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

import math

import pytest
import torch
from typer.testing import CliRunner

from sbrnn.child.checkpoint import load_model
from sbrnn.child.config import RunConfig
from sbrnn.child.model import build_model
from sbrnn.child.population import train_population
from sbrnn.child.train import evaluate_split, train_run
from sbrnn.cli import app
from sbrnn.datasets.registry import build_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

SMALL = {"n_train": 192, "n_val": 64, "n_test": 64}
COMMON = dict(task="toy-anomaly", task_options=SMALL, batch_size=32, seed=4, lr=1e-2)


@pytest.fixture(autouse=True)
def exact_matmul():
    """fp32 products on the GPU without TF32, so CPU and GPU agree to fp32 rounding."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def close(a, b, tol=1e-3):
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(a, b))


@pytest.mark.parametrize("arch", ["sbrnn", "dense", "uniform", "lstm"])
def test_forward_and_gradients_on_cuda_equal_the_cpu(arch):
    config = RunConfig(arch=arch, budget=3000, **COMMON)
    cpu, _ = build_model(config, 8, 6)
    gpu, _ = build_model(config, 8, 6)
    gpu = gpu.cuda()
    for (name, a), b in zip(cpu.state_dict().items(), gpu.state_dict().values()):
        assert torch.equal(a, b.cpu()), name  # same masks and init: drawn on the CPU, then moved
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(16, 6, 8, generator=g), torch.randn(16, 6, 6, generator=g)
    (cpu(x) * w).sum().backward()
    (gpu(x.cuda()) * w.cuda()).sum().backward()
    for (name, a), b in zip(cpu.named_parameters(), gpu.parameters()):
        scale = a.grad.abs().max().clamp_min(1e-12)
        assert float((a.grad - b.grad.cpu()).abs().max() / scale) < 1e-4, name


def test_training_on_cuda_follows_the_cpu_curve_and_keeps_masks(tmp_path):
    config = RunConfig(budget=2000, densities=((0.3, 1, 1), (1, 0.5, 1)), epochs=3, **COMMON)
    on_gpu = train_run(config, device="cuda", save=tmp_path / "model")
    on_cpu = train_run(config, device="cpu")
    assert on_gpu.status == on_cpu.status == "ok", (on_gpu.error, on_cpu.error)
    assert on_gpu.device.startswith("cuda (") and on_cpu.device == "cpu"
    assert close(on_gpu.val_loss, on_cpu.val_loss) and close(on_gpu.train_loss, on_cpu.train_loss)
    assert on_gpu.trainable_total == on_cpu.trainable_total
    model, _ = load_model(tmp_path / "model")  # saved from the GPU, read on the CPU
    assert torch.all(model.weight_x[model.mask_x == 0] == 0)
    assert torch.all(model.weight_s[model.mask_s == 0] == 0)
    task = build_task(config.task, seed=config.seed, **config.task_options)
    assert math.isclose(evaluate_split(model, task.test, task.loss)[0], on_gpu.test_loss, rel_tol=1e-4)


def test_population_on_cuda_equals_one_by_one_on_cuda():
    configs = [
        RunConfig(budget=1500, epochs=3, **COMMON),
        RunConfig(budget=900, densities=((0.3, 1, 1), (1, 0.5, 1)), epochs=2, **COMMON),
    ]
    together = train_population(configs, device="cuda")
    alone = [train_run(c, device="cuda") for c in configs]
    for a, b in zip(together, alone):
        assert a.status == b.status == "ok" and a.device.startswith("cuda"), (a.error, b.error)
        assert close(a.val_loss, b.val_loss, tol=2e-4) and close(a.train_loss, b.train_loss, tol=2e-4)


def test_bf16_autocast_on_cuda_learns():
    record = train_run(RunConfig(budget=2000, epochs=4, precision="bf16", **COMMON), device="cuda")
    assert record.status == "ok", record.error
    assert record.precision == "bf16" and record.best_epoch > 1  # still improving after epoch 1


def test_cli_train_picks_cuda_when_present(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "child",
            "train",
            "--task",
            "toy-anomaly",
            "--budget",
            "2000",
            "--epochs",
            "2",
            "--json",
            "--records",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"device": "cuda (' in result.output
