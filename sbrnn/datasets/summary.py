"""Facts about a built task, as ``sbrnn datasets build`` and ``info`` show them."""

from __future__ import annotations

from sbrnn.datasets.task import Task

SPLITS = ("train", "val", "test")


def task_summary(task: Task) -> dict:
    """JSON-ready shapes, sizes, and class balance (``cross_entropy``) or target statistics (``mse``).

    ``classes[split]`` counts the sequences of each class ``0..n_out-1``; ``targets[split]`` holds the
    mean and standard deviation over every target scalar of the split.
    """
    splits = {name: getattr(task, name) for name in SPLITS}
    out: dict = {
        "name": task.name, "n_in": task.n_in, "n_out": task.n_out, "steps": task.steps, "loss": task.loss,
        "sizes": {name: len(split) for name, split in splits.items()},
        "shapes": {
            name: {"x": list(split.x.shape), "x_dtype": str(split.x.dtype).removeprefix("torch."),
                   "y": list(split.y.shape)}
            for name, split in splits.items()
        },
    }
    if task.is_classification:
        out["classes"] = {name: s.y.bincount(minlength=task.n_out).tolist() for name, s in splits.items()}
    else:
        out["targets"] = {
            name: {"mean": float(split.y.float().mean()), "std": float(split.y.float().std())}
            for name, split in splits.items()
        }
    return out
