"""``sbrnn datasets``: collect episodes, list the tasks, build one into the cache, describe one."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer

from sbrnn.cli import progress as bars
from sbrnn.cli.options import (
    JsonOpt,
    TaskArg,
    TaskOptionOpt,
    TaskSeedOpt,
    check_output_file,
    check_seeds,
    task_options,
    writing,
)
from sbrnn.cli.render import Column, number, print_json, print_lines, render, render_fields

app = typer.Typer(help="List, build and inspect tasks.", no_args_is_help=True)


@app.command("collect")
def collect(
    env: Annotated[str, typer.Option(help="Gymnasium environment id, e.g. AdroitHandHammer-v1.")],
    episodes: Annotated[int, typer.Option(help="Episodes to roll out.")],
    dataset_id: Annotated[
        str, typer.Option("--id", help="Minari dataset id to write, e.g. local/hammer/random-v0.")
    ],
    policy: Annotated[
        str,
        typer.Option(
            help="random (uniform actions), smooth (correlated random actions), swingup (scripted, "
            "Pendulum-v1 only) or a directory written by `sbrnn child train --save`."
        ),
    ] = "random",
    seed: Annotated[int, typer.Option(help="Reset seeds of the episodes and the random policy's draws.")] = 0,
    max_steps: Annotated[int | None, typer.Option(help="Cap each episode at this many steps.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Roll a policy out in a real environment and write the episodes as a local Minari dataset
    (arrow), ready as task minari:<id>."""
    from sbrnn.child.rollout import policy_for
    from sbrnn.datasets.minari_io import collect as collect_episodes

    with bars.builder_bars() as progress:
        summary = collect_episodes(dataset_id, env, episodes, policy_for(policy), seed, max_steps, progress)
    if json_out:
        print_json(summary)
        return
    fields = [(key, summary[key]) for key in ("path", "env_id", "policy", "seed", "episodes", "steps")]
    fields += [
        ("return", f"{summary['mean_return']:.2f} +- {summary['std_return']:.2f}"),
        ("task", f"minari:{dataset_id}"),
    ]
    render_fields(fields, title=f"Minari dataset {dataset_id}")


def _size_text(size: int) -> str:
    """Bytes as ``512 B``, ``3.4 MB``, ..."""
    value, unit = float(size), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


LIST_COLUMNS = (
    Column("name"),
    number("n_x"),
    number("n_y"),
    number("steps"),
    Column("loss"),
    Column("offline", fmt=lambda v: "yes" if v else "no"),
    Column("size_on_disk", "size", "right", _size_text),
)


@app.command("list")
def list_tasks(json_out: JsonOpt = False) -> None:
    """Every task by family: input and output sizes, steps, loss, whether it builds offline here,
    and its cached data's size on disk at seed 0 and default options (- / null: not built); --json
    adds each task's source and description."""
    from sbrnn.datasets.registry import FAMILIES, get_info, task_names

    order = {family: i for i, family in enumerate(FAMILIES)}
    rows = sorted(
        (get_info(name).as_dict() for name in task_names()),
        key=lambda row: (order.get(row["family"], len(order)), row["family"]),
    )
    render(
        rows,
        LIST_COLUMNS,
        json_out=json_out,
        group="family",
        title="Tasks by family (sources and descriptions: --json or `sbrnn datasets info TASK`)",
    )


SPLIT_COLUMNS = (Column("split"), number("sequences", fmt=","), number("x"), number("y"))


def _render_splits(summary, title: str) -> None:
    """Sequences per split and the shapes of their inputs (with dtype) and targets."""
    rows = [
        {
            "split": split,
            "sequences": summary.sizes[split],
            "x": f"{shape['x']} {shape['x_dtype']}",
            "y": str(shape["y"]),
        }
        for split, shape in summary.shapes.items()
    ]
    render(rows, SPLIT_COLUMNS, title=title)


def _dims(summary) -> str:
    return f"{summary.n_x} in, {summary.n_y} out, {summary.steps} steps, {summary.loss}"


@app.command("build")
def build(
    task: TaskArg, task_option: TaskOptionOpt = None, seed: TaskSeedOpt = 0, json_out: JsonOpt = False
) -> None:
    """Generate a task into the cache (a progress bar while generating); a second build loads it."""
    from sbrnn.datasets.summary import build_summary

    check_seeds(seed=seed)

    with bars.builder_bars(f"building task {task}") as progress:
        result = build_summary(task, seed, task_options(task_option), progress)
    if json_out:
        print_json(result)
        return
    _render_splits(result.summary, f"Task {task}: {_dims(result.summary)}")
    cache = result.cache
    where = f"{'loaded from' if cache['hit'] else 'generated into'} {cache['path']}" if cache else "built"
    print_lines(f"{where} in {result.seconds:.1f} s")


TRAITS_CAPTION = "of the training split; baseline_loss: the best constant predictor's validation loss"


@app.command("info")
def info(
    task: TaskArg,
    task_option: TaskOptionOpt = None,
    seed: TaskSeedOpt = 0,
    preview: Annotated[
        Path | None, typer.Option(help="RAD only: where to write the PNG preview (default: in the cache).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Family, shapes, sizes, class balance (or target statistics), traits, generation details; for
    RAD, a PNG preview of a few sequences with the anomaly framed."""
    from sbrnn.datasets.summary import describe_task

    check_seeds(seed=seed)
    check_output_file(preview, "--preview")

    saving = writing("--preview", preview) if preview is not None else contextlib.nullcontext()
    with bars.builder_bars(f"building task {task}") as progress, saving:
        details = describe_task(task, seed, task_options(task_option), progress, preview)
    if json_out:
        print_json(details)
        return
    summary = details.summary
    print_lines(f"{task} ({details.family}): {details.description}")
    _render_splits(summary, _dims(summary))
    if summary.classes is not None:
        rows = [
            {"split": split, **{str(c): n for c, n in enumerate(counts)}}
            for split, counts in summary.classes.items()
        ]
        columns = [Column("split"), *(number(str(c), fmt=",") for c in range(summary.n_y))]
        render(rows, columns, title="Class balance (sequences per class)")
    else:
        assert summary.targets is not None  # a regression task's summary holds targets
        print_lines(
            *(
                f"{split} targets: mean {stats['mean']:.4f}, std {stats['std']:.4f}"
                for split, stats in summary.targets.items()
            )
        )
    render_fields(details.traits, title="Traits", caption=TRAITS_CAPTION, values=number("value", fmt=".6g"))
    if details.options:
        listed = ", ".join(
            f"{k}={v}" + (" (given)" if k in details.given else "") for k, v in details.options.items()
        )
        print_lines(f"options as built (--task-option sets them; the rest are defaults): {listed}")
    generation = {k: v for k, v in details.meta.items() if k != "cache"}
    print_lines(f"generation: {json.dumps(generation, default=str)}")
    if details.preview is not None:
        print_lines(f"preview: {details.preview}")
