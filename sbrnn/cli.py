"""The ``sbrnn`` command line: parses, calls the library, renders. No logic beyond that."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from sbrnn import __version__
from sbrnn import console as shared_console
from sbrnn.child import spec as weight_space
from sbrnn.errors import SbrnnError

console = Console()
err_console = shared_console.stderr


def _click_class(name: str) -> type[Exception]:
    """Click's exception class ``name`` as Typer raises it (Typer may vendor its own click)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


_ClickException = _click_class("ClickException")
_UsageError = _click_class("UsageError")


class _OneLineErrors(TyperGroup):
    """Bad input of any kind ends in one line on stderr and exit status 2, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _ClickException as exc:
            message = " ".join(exc.format_message().split())
            if message:  # empty after a group printed its own help
                typer.echo(f"error: {message}", err=True)
            sys.exit(2 if isinstance(exc, _UsageError) else exc.exit_code)
        except SbrnnError as exc:
            typer.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(130)
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx):
        """Ctrl-C in a command that does not report it itself: one line, exit status 130."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_OneLineErrors,
    help="Sparse block RNNs: plan, train and sweep children; fit parents that recommend them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
child_app = typer.Typer(help="Plan, train and sweep sparse block RNNs.", no_args_is_help=True)
parent_app = typer.Typer(help="Predict loss curves and recommend configurations.", no_args_is_help=True)
datasets_app = typer.Typer(help="List, build and inspect tasks.", no_args_is_help=True)
records_app = typer.Typer(help="Summarise, export and plot run records.", no_args_is_help=True)
app.add_typer(child_app, name="child")
app.add_typer(parent_app, name="parent")
app.add_typer(datasets_app, name="datasets")
app.add_typer(records_app, name="records")


def _version(value: bool) -> None:
    if value:
        console.print(f"sbrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Sparse block RNNs: plan, train and sweep children; fit parents that recommend them."""


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


# Shared options ------------------------------------------------------------------------------

InOpt = Annotated[int, typer.Option("--in", help="Input size |x| of the task.")]
OutOpt = Annotated[int, typer.Option("--out", help="Output size |y| of the task.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
DENSITIES_HELP = 'Block densities "hx,hh,hy/yx,yh,yy" (rows h, y; columns x, h, y) or one number.'


def _check_dims(n_in: int, n_out: int) -> None:
    for flag, value in (("--in", n_in), ("--out", n_out)):
        if value < 1:
            raise SbrnnError(f"{flag} {value} is out of range; allowed: integers >= 1")


# Rendering -----------------------------------------------------------------------------------


def _plan_table(plan: dict, title: str) -> Table:
    """The weight space as the paper's Fig. 4: rows h, y; columns x, h, y."""
    sizes = (plan["n_in"], plan["hidden"], plan["n_out"])
    table = Table(title=title, title_justify="left")
    table.add_column("")
    for name, size in zip(weight_space.COLS, sizes):
        table.add_column(f"{name} ({size})", justify="right")
    for i, row in enumerate(weight_space.ROWS):
        cells = []
        for j in range(3):
            r, c = plan["shapes"][i][j]
            cells.append(
                f"{r}x{c}  d={plan['densities'][i][j]:.2f}\n{plan['trainable'][i][j]:,} trainable"
            )
        table.add_row(f"{row} ({sizes[1] if row == 'h' else sizes[2]})", *cells)
    budget = f"  budget {plan['budget']:,.0f}" if plan.get("budget") else ""
    table.caption = (
        f"h = {plan['hidden']}  total trainable {plan['total_trainable']:,}{budget}\n"
        f"model density {plan['model_density']:.3f}  "
        f"hidden proportion {plan['hidden_proportion']:.3f}"
    )
    table.caption_justify = "left"
    return table


# child ---------------------------------------------------------------------------------------


@child_app.command("plan")
def child_plan(
    n_in: InOpt,
    n_out: OutOpt,
    budget: Annotated[
        float | None, typer.Option(help="Trainable-weight budget; sets h. Biases excluded.")
    ] = None,
    hidden: Annotated[int | None, typer.Option(help="Hidden size |h|, instead of --budget.")] = None,
    densities: Annotated[str, typer.Option(help=DENSITIES_HELP)] = "1",
    json_out: JsonOpt = False,
) -> None:
    """Show the weight space of one configuration: block shapes, densities, trainable counts."""
    _check_dims(n_in, n_out)
    grid = weight_space.parse_grid(densities, "densities")
    if (budget is None) == (hidden is None):
        raise SbrnnError("give exactly one of --budget and --hidden")
    if hidden is not None:
        spec = weight_space.SparseBlockSpec(n_in, n_out, hidden, grid)
    else:
        spec = weight_space.SparseBlockSpec.from_budget(n_in, n_out, budget, grid)
    plan = spec.plan(budget)
    if json_out:
        _print_json(plan)
    else:
        console.print(_plan_table(plan, f"Weight space, {n_in} in / {n_out} out"))


def _parse_task_options(values: list[str] | None) -> dict:
    """``["n_train=200", "side=28"]`` -> ``{"n_train": 200, "side": 28}`` (values read as JSON, else text)."""
    options = {}
    for item in values or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SbrnnError(f"--task-option {item!r} is malformed; expected key=value (e.g. n_train=200)")
        try:
            options[key.strip()] = json.loads(text)
        except ValueError:
            options[key.strip()] = text
    return options


def _bar(description: str, total: int):
    """A started rich progress bar on stderr for ``total`` units of ``description``, and its task id."""
    from rich import progress

    columns = (progress.TextColumn("{task.description}"), progress.BarColumn(), progress.MofNCompleteColumn(),
               progress.TimeRemainingColumn())
    bar = progress.Progress(*columns, console=err_console)
    bar.start()
    return bar, bar.add_task(description, total=total)


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr for ``total`` units of ``description``; yields ``advance(n)``."""
    bar, task = _bar(description, total)
    try:
        yield lambda n: bar.advance(task, n)
    finally:
        bar.stop()


@contextlib.contextmanager
def _progress_bars() -> Iterator[Callable[[str, int, int], None]]:
    """A :data:`sbrnn.datasets.progress.Progress` callback for builders: each piece of work it is
    told of is drawn as a rich bar on stderr from its first report until ``done == total``."""
    live: dict[str, tuple] = {}  # description -> (bar, task id), until done

    def progress(description: str, done: int, total: int) -> None:
        if description not in live:
            live[description] = _bar(description, total)
        bar, task = live[description]
        bar.update(task, completed=done, total=total)
        if done >= total:
            bar.stop()
            del live[description]

    try:
        yield progress
    finally:
        for bar, _ in live.values():
            bar.stop()


def _build_task(name: str, seed: int, options: dict):
    """The registered task ``name`` (the registry rejects unknown options), its generation or
    collection drawn as progress bars; any error is one line."""
    from sbrnn.datasets.registry import build_task

    try:
        with err_console.status(f"building task {name}"), _progress_bars() as progress:
            # an option named progress replaces the callback, and the registry rejects it as unknown
            return build_task(name, seed=seed, **{"progress": progress, **options})
    except SbrnnError:
        raise
    except (TypeError, ValueError, RuntimeError) as exc:
        raise SbrnnError(f"task {name!r} cannot be built with options {options}: {exc}") from None


def _grid_option(text: str | None, name: str):
    return weight_space.parse_grid(text, name) if text is not None else None


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _record_table(record, extra: dict) -> Table:
    """The key fields of a run record, and where its files went."""
    table = Table(title=f"Run {record.run_id}: {record.arch} on {record.task}", title_justify="left",
                  show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    best = f" (epoch {record.best_epoch})" if record.best_epoch else ""
    rows = [
        ("status", record.status + (f": {record.error}" if record.error else "")),
        ("task", f"{record.n_x} in, {record.n_y} out, {record.steps} steps, {record.loss_kind}"),
        ("hidden size", str(record.h)),
        ("budget", _fmt(record.budget, ",.0f")),
        ("trainable", f"{record.trainable_total:,} weights + {record.bias_count:,} biases"
                      + (" (biases inside the LSTM count)" if record.arch == "lstm" else "")),
        ("hidden proportion", _fmt(record.hidden_proportion, ".3f")),
        ("model density", _fmt(record.model_density, ".3f")),
        ("epochs run", f"{len(record.val_loss)} of {record.epochs}"),
        ("min val loss", _fmt(record.min_val_loss) + best),
    ]
    if record.val_acc:
        rows.append(("best val acc", _fmt(max(record.val_acc), ".3f")))
    rows += [
        ("test loss", _fmt(record.test_loss)),
        ("test acc", _fmt(record.test_acc, ".3f")),
        ("lr, batch, seed", f"{record.lr:g}, {record.batch_size}, {record.seed}"),
        ("wall time", f"{record.wall_seconds:.1f} s on {record.device}"),
        *extra.items(),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _blocks_table(record) -> Table:
    """Realised trainable counts per block (mask nonzeros), with the densities that drew them."""
    sizes = {"x": record.n_x, "h": record.h, "y": record.n_y}
    table = Table(title="Trainable weights per block (realised masks)", title_justify="left")
    table.add_column("")
    for col in weight_space.COLS:
        table.add_column(f"{col} ({sizes[col]})", justify="right")
    for row in weight_space.ROWS:
        cells = [f"{getattr(record, f'trainable_{row}{col}'):,}  d={getattr(record, f'd_{row}{col}'):.2f}"
                 for col in weight_space.COLS]
        table.add_row(f"{row} ({sizes[row]})", *cells)
    return table


class _EpochBar:
    """A rich progress bar over epochs showing the latest losses and accuracy (on stderr)."""

    def __init__(self, epochs: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("epoch"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"), console=err_console,
        )
        self.task = self.progress.add_task("train", total=epochs, metrics="")
        self.done = 0

    def __enter__(self) -> _EpochBar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, epoch: int, metrics: dict) -> None:
        text = f"train {metrics['train_loss']:.4f}  val {metrics['val_loss']:.4f}"
        if metrics["val_acc"] is not None:
            text += f"  acc {metrics['val_acc']:.3f}"
        self.progress.update(self.task, completed=epoch, metrics=text)
        self.done = epoch


TaskOptionOpt = Annotated[
    list[str] | None,
    typer.Option("--task-option", help="A task builder option key=value (repeat), e.g. n_train=300."),
]
DeviceOpt = Annotated[
    str | None, typer.Option(help="cpu, cuda or cuda:N; default CUDA when available, else CPU.")
]


@child_app.command("train")
def child_train(
    task: Annotated[str, typer.Option(help="Registered task name (see `sbrnn datasets list`).")] = "rad",
    task_option: TaskOptionOpt = None,
    arch: Annotated[str, typer.Option(help="sbrnn, dense, uniform or lstm.")] = "sbrnn",
    budget: Annotated[
        float | None, typer.Option(help="Trainable-weight budget (biases excluded); default 100000.")
    ] = None,
    hidden: Annotated[int | None, typer.Option(help="Hidden size |h|, instead of --budget.")] = None,
    densities: Annotated[str | None, typer.Option(help=DENSITIES_HELP + " sbrnn only.")] = None,
    balanced: Annotated[
        bool, typer.Option("--balanced", help="The a-priori balanced densities (the sbrnn default).")
    ] = False,
    means: Annotated[str | None, typer.Option(help="Init means of kept entries, same form.")] = None,
    stds: Annotated[str | None, typer.Option(help="Init stds of kept entries, same form.")] = None,
    uniform_density: Annotated[
        float | None, typer.Option(help="Density of every block for --arch uniform (default 0.2).")
    ] = None,
    activation: Annotated[str, typer.Option(help="relu or tanh, on h.")] = "relu",
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    epochs: Annotated[int, typer.Option(help="Passes over the training split.")] = 25,
    batch_size: Annotated[int, typer.Option(help="Sequences per batch.")] = 16,
    patience: Annotated[
        int | None, typer.Option(help="Stop after this many epochs without a new best validation loss.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Drives the task data, masks, init and data order.")] = 0,
    device: DeviceOpt = None,
    threads: Annotated[int | None, typer.Option(help="Torch intra-op threads.")] = None,
    precision: Annotated[str, typer.Option(help="fp32 or bf16 (autocast).")] = "fp32",
    records: Annotated[Path | None, typer.Option(help="Write the run record into this directory.")] = None,
    save: Annotated[Path | None, typer.Option(help="Save the best-epoch model into this directory.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Train one child and show its record. Exit status 1 when the run diverged or failed."""
    from sbrnn.child.config import RunConfig
    from sbrnn.child.model import resolve
    from sbrnn.child.train import resolve_device, train_run
    from sbrnn.records import write_record

    if densities is not None and balanced:
        raise SbrnnError("give only one of --densities and --balanced")
    if balanced and arch != "sbrnn":
        raise SbrnnError(f"--balanced applies to arch sbrnn only, not {arch!r}")
    if uniform_density is not None and arch != "uniform":
        raise SbrnnError(f"--uniform-density applies to arch uniform only, not {arch!r}")
    if budget is not None and hidden is not None:
        raise SbrnnError("give only one of --budget and --hidden")
    if threads is not None and threads < 1:
        raise SbrnnError(f"--threads {threads} is out of range; allowed: integers >= 1")
    config = RunConfig(
        task=task, task_options=_parse_task_options(task_option), arch=arch,
        budget=None if hidden is not None else (100_000 if budget is None else budget), hidden=hidden,
        densities=_grid_option(densities, "densities"), means=_grid_option(means, "means"),
        stds=_grid_option(stds, "stds"), uniform_density=0.2 if uniform_density is None else uniform_density,
        activation=activation, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed, patience=patience,
        precision=precision,
    )
    resolve_device(device)
    built = _build_task(task, seed, config.task_options)
    resolve(config, built.n_in, built.n_out)  # a budget too small, bad densities: fail before training
    try:
        with _EpochBar(epochs) as bar:
            record = train_run(config, built, device=device, threads=threads, progress=bar, save=save)
    except KeyboardInterrupt:
        err_console.print(f"interrupted after {bar.done} of {epochs} epochs: nothing written (--records and "
                          "--save take finished runs only); the same command trains the run again")
        raise typer.Exit(130) from None
    record.origin = "train"
    extra = {}
    if records is not None:
        extra["record"] = str(write_record(record, records))
    if save is not None:
        extra["saved model"] = str(save) if record.status == "ok" else "not saved (the run did not end ok)"
    if json_out:
        _print_json(record.to_dict())
    else:
        console.print(_record_table(record, extra))
        if record.arch != "lstm" and record.trainable_hx is not None:
            console.print(_blocks_table(record))
    if record.status != "ok":
        raise typer.Exit(1)


@child_app.command("evaluate")
def child_evaluate(
    model: Annotated[Path, typer.Option(help="A directory written by `sbrnn child train --save`.")],
    task: Annotated[
        str | None, typer.Option(help="Registered task name; default the task the model was trained on.")
    ] = None,
    task_option: TaskOptionOpt = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Task seed; default the training run's seed for its own task. With --env: the "
                          "episodes' reset seed, default 0."),
    ] = None,
    device: DeviceOpt = None,
    env: Annotated[
        str | None,
        typer.Option(help="Run the policy in this Gymnasium environment instead (e.g. AdroitHandHammer-v1)."),
    ] = None,
    episodes: Annotated[int, typer.Option(help="With --env: episodes to run.")] = 10,
    max_steps: Annotated[
        int | None, typer.Option(help="With --env: cap each episode at this many steps.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Test loss and accuracy of a saved child on a task's test split; with --env, its return as a
    policy in the real environment (behaviour-cloning children)."""
    from sbrnn.child.checkpoint import load_model
    from sbrnn.child.train import evaluate_split, resolve_device

    if env is not None:
        if task is not None or task_option or device is not None:
            raise SbrnnError("--task, --task-option and --device do not apply with --env")
        _evaluate_in_env(model, env, episodes, 0 if seed is None else seed, max_steps, json_out)
        return
    module, info = load_model(model)
    saved = info["config"]
    name = task or info["task"]["name"]
    same_task = name == info["task"]["name"]
    if task_option:
        options = _parse_task_options(task_option)
    else:
        options = saved["task_options"] if same_task else {}
    seed = seed if seed is not None else (saved["seed"] if same_task else 0)
    torch_device = resolve_device(device)
    built = _build_task(name, seed, options)
    dims = (info["task"]["n_in"], info["task"]["n_out"])
    if (built.n_in, built.n_out) != dims:
        raise SbrnnError(
            f"task {name!r} has {built.n_in} inputs and {built.n_out} outputs; the model in {str(model)!r} "
            f"takes {dims[0]} and gives {dims[1]}"
        )
    loss, acc = evaluate_split(module.to(torch_device), built.test, built.loss, torch_device)
    result = {
        "model": str(model), "run_id": info["run_id"], "arch": info["arch"], "task": name,
        "task_options": options, "seed": seed, "split": "test", "sequences": len(built.test),
        "loss_kind": built.loss, "test_loss": loss, "test_acc": acc,
    }
    if json_out:
        _print_json(result)
        return
    table = Table(title=f"Model {model} ({info['arch']}, run {info['run_id']})", title_justify="left",
                  show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key in ("task", "seed", "sequences", "loss_kind"):
        table.add_row(key, str(result[key]))
    table.add_row("test loss", _fmt(loss))
    table.add_row("test acc", _fmt(acc, ".3f"))
    console.print(table)


def _evaluate_in_env(model: Path, env: str, episodes: int, seed: int, max_steps: int | None,
                     json_out: bool) -> None:
    """``child evaluate --env``: roll the saved child out and show its returns and score."""
    from sbrnn.child.rollout import evaluate_in_env

    with progress_bar(f"{env} episodes", episodes) as advance:
        result = evaluate_in_env(model, env, episodes, seed, max_steps, advance)
    if json_out:
        _print_json(result)
        return
    table = Table(title=f"Model {model} in {env} (run {result['run_id']})", title_justify="left",
                  show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("trained on", result["task"])
    mean_length = sum(result["lengths"]) / episodes
    table.add_row("episodes", f"{episodes} (seed {seed}, mean length {mean_length:.0f} steps)")
    table.add_row("return", f"{result['mean_return']:.2f} +- {result['std_return']:.2f}")
    if result["mean_normalised_score"] is not None:
        table.add_row("normalised score", f"{result['mean_normalised_score']:.2f} +- "
                                          f"{result['std_normalised_score']:.2f}")
        table.add_row("reference", f"min {result['ref_min_score']:g}, max {result['ref_max_score']:g} "
                                   f"({result['ref_source']})")
    else:
        table.add_row("normalised score", "- (no reference scores for this environment)")
    console.print(table)


class _RunsPerHour(ProgressColumn):
    """Runs finished per hour in this session."""

    def render(self, task) -> Text:
        if not task.completed or not task.elapsed:
            return Text("- runs/h", style="progress.data.speed")
        return Text(f"{3600 * task.completed / task.elapsed:,.0f} runs/h", style="progress.data.speed")


class _SweepEta(ProgressColumn):
    """Time left at this session's mean pace (robust to runs that take minutes each)."""

    def render(self, task) -> Text:
        if not task.completed or not task.elapsed or task.total is None:
            return Text("ETA -:--:--", style="progress.remaining")
        left = round((task.total - task.completed) * task.elapsed / task.completed)
        return Text(f"ETA {left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}", style="progress.remaining")


class _SweepProgress:
    """The sweep's progress bar: runs done of total, failed and diverged, runs/h, ETA. Use as a
    context manager; :meth:`begin` is ``run_sweep``'s ``on_start``, the instance its ``on_record``."""

    def __init__(self, console: Console, description: str = "sweep") -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed[/] {task.fields[diverged]} diverged"),
            _RunsPerHour(), TimeElapsedColumn(), _SweepEta(), console=console,
        )
        self._description = description
        self._task = None
        self._counts = {"failed": 0, "diverged": 0}

    def begin(self, total: int) -> None:
        self._task = self._progress.add_task(self._description, total=total, **self._counts)

    def __enter__(self):
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def __call__(self, record) -> None:
        if record.status in self._counts:
            self._counts[record.status] += 1
        self._progress.update(self._task, advance=1, **self._counts)


@child_app.command("sweep")
def child_sweep(
    records: Annotated[Path, typer.Option(help="Records directory (one Parquet shard per run).")],
    task: Annotated[
        list[str] | None, typer.Option("--task", help="Registered task name; repeat for several.")
    ] = None,
    runs: Annotated[int | None, typer.Option(help="Random draws per task and budget.")] = None,
    budget: Annotated[
        list[float] | None, typer.Option("--budget", help="Trainable-weight budget; repeat for several.")
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option("--plan", help="A plan file (TOML: tasks, options, budgets, draws, epochs) instead of "
                     "--task/--budget/--runs; see sweeps/zoo-v1.toml."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs per run.")] = 25,
    seed: Annotated[int, typer.Option(help="Sweep seed: plans the draws and seeds every run.")] = 0,
    space: Annotated[str, typer.Option(help="Sampling space: paper (method.md §6) or uniform.")] = "paper",
    lr: Annotated[float | None, typer.Option(help="Pin the learning rate for every run.")] = None,
    densities: Annotated[str | None, typer.Option(help="Pin the densities: " + DENSITIES_HELP)] = None,
    means: Annotated[str | None, typer.Option(help="Pin the init means (same form).")] = None,
    stds: Annotated[str | None, typer.Option(help="Pin the init stds (same form).")] = None,
    include_baselines: Annotated[
        bool, typer.Option("--include-baselines", help="Add dense, uniform-0.2 and LSTM runs per budget.")
    ] = False,
    balanced: Annotated[
        bool, typer.Option("--balanced", help="Add the a-priori balanced configuration per budget.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Sequences per batch.")] = 16,
    task_option: TaskOptionOpt = None,
    workers: Annotated[int, typer.Option(help="Local worker processes (1 = in this process).")] = 1,
    threads: Annotated[int, typer.Option(help="Torch threads per worker.")] = 1,
    population: Annotated[
        int, typer.Option(help="Train up to this many compatible runs together in one batched step.")
    ] = 1,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running Dask scheduler, tcp://HOST:PORT.")
    ] = None,
    local_cluster: Annotated[
        int | None, typer.Option(help="Start a local Dask cluster of this many one-thread workers.")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Rerun runs recorded as failed.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the planned runs and whether each is recorded.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train many children into a records directory; rerun the same command to resume."""
    from sbrnn.child import space as sampling
    from sbrnn.child.sweep import coordinator, executors
    from sbrnn.child.sweep.plan import describe_plan, plan_sweep

    for flag, value in (("--threads", threads), ("--workers", workers), ("--population", population)):
        if value < 1:
            raise SbrnnError(f"{flag} {value} is out of range; allowed: integers >= 1")
    if sum([workers != 1, scheduler is not None, local_cluster is not None]) > 1:
        raise SbrnnError("give only one of --workers, --scheduler and --local-cluster")
    if plan is not None:
        given = [flag for flag, value in (("--task", task), ("--budget", budget), ("--runs", runs),
                                          ("--task-option", task_option)) if value]
        if given:
            raise SbrnnError(f"give either --plan or {given[0]} (a plan file holds tasks, budgets, runs)")
        from sbrnn.child.sweep.plan_file import load_plan

        planned = load_plan(plan).planned_runs()
    else:
        if not task or not budget or runs is None:
            raise SbrnnError("give --task, --budget and --runs, or a plan file with --plan")
        pins = sampling.Pins(
            densities=weight_space.parse_grid(densities, "densities") if densities else None,
            means=weight_space.parse_grid(means, "means") if means else None,
            stds=weight_space.parse_grid(stds, "stds") if stds else None,
            lr=lr,
        )
        planned = plan_sweep(
            task, budget, runs, epochs=epochs, seed=seed, space=space, pins=pins,
            include_baselines=include_baselines, balanced=balanced, batch_size=batch_size,
            task_options=_parse_task_options(task_option),
        )
    if records.exists() and not records.is_dir():
        raise SbrnnError(f"--records {str(records)!r} is a file; allowed: a directory (new or existing)")
    if dry_run:
        rows = describe_plan(planned, records)
        if json_out:
            _print_json(rows)
            return
        table = Table(title=f"{len(planned)} planned runs into {records}", title_justify="left")
        for col in ("run", "task", "budget", "arch", "h", "densities", "lr", "run id", "recorded"):
            table.add_column(col, justify="right" if col in ("budget", "h", "lr") else "left")
        for r in rows:
            grid = weight_space.format_grid(r["densities"]) if r["densities"] else "-"
            table.add_row(r["label"], r["task"], f"{r['budget']:,.0f}", r["arch"], str(r["h"]), grid,
                          f"{r['lr']:.6g}", r["run_id"], r["recorded"] or "-")
        console.print(table)
        return
    runner = executors.run_population_job if population > 1 else executors.run_job
    if scheduler is not None or local_cluster is not None:
        executor = executors.DaskCluster(scheduler, local_cluster, threads, runner=runner)
    elif workers > 1:
        executor = executors.LocalProcesses(workers, threads, runner=runner)
    else:
        executor = executors.InProcess(threads, runner=runner)
    progress = _SweepProgress(err_console)

    def start(report: coordinator.SweepReport) -> None:
        err_console.print(f"{report.planned} planned runs, {report.already_done} already recorded in "
                          f"{records}, {report.to_run} to run on {executor.name}")
        progress.begin(report.to_run)

    with _warnings_as_lines(), progress:
        report = coordinator.run_sweep(
            planned, records, executor, retry_failed=retry_failed, on_start=start, on_record=progress,
            population=population,
        )
    if json_out:
        _print_json(report.as_dict())
    else:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.statuses.items())) or "nothing new"
        console.print(f"{report.finished} runs recorded in {records} ({counts}); "
                      f"{report.already_done + report.finished} of {report.planned} planned are done")
    if report.interrupted:
        resume = shlex.join(["sbrnn", *sys.argv[1:]])
        err_console.print(f"interrupted; records so far are kept. Resume with:\n  {resume}", soft_wrap=True)
        raise typer.Exit(130)


# parent --------------------------------------------------------------------------------------


ParentDirOpt = Annotated[Path, typer.Option("--model", help="Parent directory from `sbrnn parent fit`.")]
KindOpt = Annotated[
    str | None, typer.Option("--kind", help="Model of the parent: rf, xgb or mlp (default: its best).")
]
StepsOpt = Annotated[
    int | None, typer.Option("--steps", help="Sequence length T (default: from the parent's tasks).")
]
LossOpt = Annotated[
    str | None, typer.Option("--loss", help="cross_entropy or mse (default: from the parent's tasks).")
]


def _parent_progress(title: str):
    """A rich progress bar on stderr and the ``on_step(description, total)`` callback that drives it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.description}"), console=err_console, transient=True)
    task = progress.add_task("", total=None)

    def on_step(description: str, total: int) -> None:
        progress.update(task, advance=1, total=total, description=description)

    return progress, on_step


_EVALUATIONS = {"cv": "k-fold", "leave_one_task_out": "leave one task out", "unseen": "unseen runs"}
_MODEL_NAMES = {"hidden_proportion": "hp alone", "constant": "constant"}


def _metrics_tables(report: dict, title: str) -> list[Table]:
    """Held-out metrics: one table per evaluation, a row per model and scope (pooled, per task)."""
    from sbrnn.parent.evaluate import report_rows

    rows = report_rows(report)
    tables = []
    for ev, name in _EVALUATIONS.items():
        chosen = [r for r in rows if r["evaluation"] == ev]
        if not chosen:
            continue
        table = Table(title=f"{title}: {name}", title_justify="left")
        for col in ("model", "scope", "n", "R^2 log min", "rho min", "RMSE log curve", "top 10%"):
            text = col in ("model", "scope")  # fold task names; numbers never wrap
            table.add_column(col, justify="left" if text else "right", no_wrap=not text, overflow="fold")
        for r in chosen:
            table.add_row(_MODEL_NAMES.get(r["model"], r["model"]), r["scope"], str(r["n"]),
                          _fmt(r["r2_min"], ".3f"), _fmt(r["spearman_min"], ".3f"),
                          _fmt(r["rmse_log_curve"], ".3f"), _fmt(r["top10_precision"], ".2f"))
        tables.append(table)
    return tables


def _converges_table(converges: dict) -> Table:
    table = Table(title="Converges classifier (held out)", title_justify="left")
    for col in ("evaluation", "model", "runs", "converged", "Brier", "Brier of the rate", "accuracy"):
        table.add_column(col, justify="left" if col in ("evaluation", "model") else "right")
    for ev, per_model in converges.items():
        for model, m in (per_model or {}).items():
            table.add_row(_EVALUATIONS[ev], model, str(m["n"]), str(m["converged"]),
                          *(_fmt(m[k], ".3f") for k in ("brier", "brier_constant", "accuracy")))
    return table


def _counts_line(counts: dict) -> str:
    status = ", ".join(f"{n} {s}" for s, n in counts["status"].items())
    excluded = ", ".join(f"{n} {why}" for why, n in counts["excluded"].items()) or "none"
    return (f"runs {counts['runs']}: {status}; converged {counts['converged']} (curve targets; "
            f"{counts['curves_padded']} padded with their running minimum), not converged "
            f"{counts['not_converged']} (converges label only); left out: {excluded}")


@parent_app.command("fit")
def parent_fit(
    records: Annotated[Path, typer.Argument(help="Records directory (Parquet shards of run records).")],
    out: Annotated[Path, typer.Option("--out", help="Parent directory to write.")],
    model: Annotated[str, typer.Option("--model", help="rf, xgb, mlp or all.")] = "rf",
    folds: Annotated[int, typer.Option(help="Folds of the cross-validation (>= 2).")] = 5,
    trees: Annotated[
        int | None, typer.Option(help="Trees (rf, default 1000) or boosting rounds (xgb, default 300).")
    ] = None,
    members: Annotated[int | None, typer.Option(help="Ensemble members of xgb and mlp (default 5).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of folds, bootstrap rows and model initialisation.")] = 0,
    jobs: Annotated[int, typer.Option(help="Threads for rf and xgb (-1: every core).")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Fit a parent on run records; report k-fold (and leave-one-task-out) metrics with baselines."""
    from sbrnn.parent.evaluate import check_folds, fit_and_evaluate
    from sbrnn.parent.features import records_in
    from sbrnn.parent.models import KINDS, CurveRegressor
    from sbrnn.parent.store import save_parent

    if model != "all" and model not in KINDS:
        raise SbrnnError(f"--model {model!r} is unknown; allowed: {', '.join(KINDS)}, all")
    kinds = list(KINDS) if model == "all" else [model]
    check_folds(folds)
    for kind in kinds:  # bad sizes fail before the records are read
        CurveRegressor(kind, n_estimators=trees, n_members=members).params()
    runs = records_in(records)
    progress, on_step = _parent_progress("fitting")
    with progress:
        parent, report = fit_and_evaluate(runs, kinds, folds=folds, trees=trees, members=members, seed=seed,
                                          n_jobs=jobs, on_step=on_step)
    manifest = save_parent(parent, out, report)
    if json_out:
        _print_json({"parent": str(out), "manifest": str(manifest), **report})
        return
    for table in _metrics_tables(report, f"Held-out metrics ({folds} folds)"):
        console.print(table)
    console.print(_converges_table(report["converges"]))
    console.print(f"{_counts_line(report['counts'])}\ncurves of {report['epochs']} epochs; baselines: hp "
                  "alone = rf on the hidden proportion alone, constant = training mean curve")
    console.print(f"default model {report['default_model']} (best pooled k-fold R^2); written to {out}")


@parent_app.command("predict")
def parent_predict(
    model: ParentDirOpt,
    n_in: InOpt,
    n_out: OutOpt,
    budget: Annotated[float, typer.Option(help="Trainable-weight budget (biases excluded); sets h.")],
    densities: Annotated[str, typer.Option(help=DENSITIES_HELP)] = "1",
    means: Annotated[str, typer.Option(help="Init means of kept entries (same form).")] = "0",
    stds: Annotated[str, typer.Option(help="Init stds of kept entries (same form).")] = "0.05",
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    steps: StepsOpt = None,
    loss: LossOpt = None,
    kind: KindOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Predict the validation-loss curve (with an uncertainty band) and its minimum for one configuration."""
    from sbrnn.parent.store import load_parent

    _check_dims(n_in, n_out)
    grids = {name: weight_space.parse_grid(text, name)
             for name, text in (("densities", densities), ("means", means), ("stds", stds))}
    spec = weight_space.SparseBlockSpec.from_budget(n_in, n_out, budget, **grids)
    parent, manifest = load_parent(model)
    result = parent.predict_spec(spec, budget=budget, lr=lr, steps=steps, loss_kind=loss, kind=kind)
    result["training_counts"] = manifest["metrics"].get("counts")
    if json_out:
        _print_json(result)
        return
    plan = result["plan"]
    table = Table(title=f"Predicted validation loss ({result['model']} parent, {result['loss_kind']}, "
                        f"T = {result['steps']})", title_justify="left")
    for col in ("epoch", "predicted", "low", "high"):
        table.add_column(col, justify="right")
    for e, mid, lo, hi in zip(result["epochs"], result["curve"], result["curve_low"], result["curve_high"]):
        table.add_row(str(e), f"{mid:.4g}", f"{lo:.4g}", f"{hi:.4g}")
    console.print(table)
    console.print(
        f"minimum {result['min_val_loss']:.4g} (band {result['min_low']:.4g} to {result['min_high']:.4g}, "
        f"one spread in log loss); P(converges) {result['p_converge']:.2f}\n"
        f"h = {plan['hidden']}, densities {weight_space.format_grid(plan['densities'])}, hidden proportion "
        f"{plan['hidden_proportion']:.3f}, lr {lr:g}, total trainable {plan['total_trainable']:,}"
    )
    if result["training_counts"]:
        console.print("trained on " + _counts_line(result["training_counts"]))


@parent_app.command("evaluate")
def parent_evaluate(
    model: ParentDirOpt,
    records: Annotated[Path, typer.Argument(help="Records directory the parent did not see.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for fig10.png and metrics.json.")],
    kind: KindOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Metrics of a parent on unseen records, and Fig. 10 (predicted vs actual minimum validation loss)."""
    from sbrnn.parent.evaluate import evaluate_parent, plot_predicted_vs_actual
    from sbrnn.parent.features import records_in
    from sbrnn.parent.store import load_parent

    parent, _ = load_parent(model)
    report, arrays = evaluate_parent(parent, records_in(records), kind)
    pooled = report["unseen"][report["model"]]["pooled"]
    title = (f"Fig. 10: {report['model']} parent on {pooled['n']} unseen runs; R^2 (log) "
             f"{_fmt(pooled['r2_min'], '.3f')}, Spearman {_fmt(pooled['spearman_min'], '.3f')}")
    out.mkdir(parents=True, exist_ok=True)
    report["figure"] = str(plot_predicted_vs_actual(arrays, out / "fig10.png", title))
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    if json_out:
        _print_json(report)
        return
    for table in _metrics_tables(report, f"Parent {model} on {records}"):
        console.print(table)
    console.print(_converges_table(report["converges"]))
    console.print(f"{_counts_line(report['counts'])}; {report['counts']['seen_in_training']} records the "
                  f"parent trained on were left out\nfigure: {report['figure']}")


def _ranked_table(result: dict) -> Table:
    table = Table(title=f"Top {len(result['top'])} configurations for {result['n_in']} in / "
                        f"{result['n_out']} out at budget {result['budget']:,.0f}, ranked by the "
                        f"{result['model']} parent", title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, collapse_padding=True)
    for col in ("#", "h", "densities", "hp", "lr", "min", "band", "P(ok)", "from"):
        # numbers never wrap or truncate; within 80 columns the densities fold instead
        grid = col == "densities"
        table.add_column(col, justify="left" if col in ("densities", "from") else "right",
                         no_wrap=not grid, overflow="fold", min_width=15 if grid else None)
    for r in result["top"]:
        table.add_row(str(r["rank"]), str(r["h"]), weight_space.format_grid(r["densities"]),
                      f"{r['hidden_proportion']:.3f}", f"{r['lr']:.1e}", f"{r['predicted_min']:.3g}",
                      f"{r['min_low']:.3g}-{r['min_high']:.3g}", f"{r['p_converge']:.2f}", r["source"])
    return table


def _ranked_notes(result: dict) -> str:
    scored = ", ".join(f"{n} {src}" for src, n in result["candidates"].items())
    notes = (f"T = {result['steps']}, {result['loss_kind']}; candidates scored: {scored}; hp: hidden "
             "proportion; min and band: predicted minimum validation loss and its spread; P(ok): "
             "probability of converging; ranked by P(ok) * min + (1 - P(ok)) * the worst candidate's min")
    if not result["seen_task"]:
        notes += "\nthese dims are not among the parent's training tasks: the ranking extrapolates"
    if result.get("training_counts"):
        notes += "\ntrained on " + _counts_line(result["training_counts"])
    return notes


@parent_app.command("recommend")
def parent_recommend(
    n_in: InOpt,
    n_out: OutOpt,
    budget: Annotated[float, typer.Option(help="Trainable-weight budget (biases excluded).")] = 100_000,
    target: Annotated[float, typer.Option(help="Target hidden proportion, in (0, 1) (no --model).")] = 0.5,
    model: Annotated[
        Path | None, typer.Option("--model", help="Parent directory: rank candidates by its predictions.")
    ] = None,
    top: Annotated[int | None, typer.Option(help="With --model: configurations to show [5].")] = None,
    seed: Annotated[int, typer.Option(help="With --model: seed of the random and perturbed candidates.")] = 0,
    kind: KindOpt = None,
    steps: StepsOpt = None,
    loss: LossOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Recommend configurations for a task: from its dims and a budget alone, or ranked by a parent."""
    from sbrnn.parent.recommend import a_priori

    _check_dims(n_in, n_out)
    if model is not None:
        from sbrnn.parent.recommend import model_ranked
        from sbrnn.parent.store import load_parent

        parent, manifest = load_parent(model)
        ranked = model_ranked(parent, n_in, n_out, budget, top=5 if top is None else top, seed=seed,
                              kind=kind, steps=steps, loss_kind=loss)
        ranked["training_counts"] = manifest["metrics"].get("counts")
        if json_out:
            _print_json(ranked)
        else:
            console.print(_ranked_table(ranked))
            console.print(_ranked_notes(ranked))
        return
    if top is not None or kind is not None or steps is not None or loss is not None:
        raise SbrnnError("--top, --kind, --steps and --loss rank candidates by a parent; give --model too")
    result = a_priori(n_in, n_out, budget, target)
    if json_out:
        _print_json(result)
        return
    rec = result["recommended"]
    console.print(
        _plan_table(
            rec,
            f"Balanced configuration: block {rec['sparsified_block']} sparsified, target "
            f"hidden proportion {target:g}",
        )
    )
    table = Table(title=f"Baselines at budget {budget:,.0f}", title_justify="left")
    for col in ("arch", "h", "densities", "total trainable", "hidden proportion", "model density"):
        table.add_column(col, justify="left" if col in ("arch", "densities") else "right")
    for name, plan in [("balanced", rec), *result["baselines"].items()]:
        if "densities" in plan:
            table.add_row(
                name, str(plan["hidden"]), weight_space.format_grid(plan["densities"]),
                f"{plan['total_trainable']:,}", f"{plan['hidden_proportion']:.3f}",
                f"{plan['model_density']:.3f}",
            )
        else:
            table.add_row(name, str(plan["hidden"]), "LSTM, proj = n_out",
                          f"{plan['total_trainable']:,}", "-", "-")
    console.print(table)


# datasets ------------------------------------------------------------------------------------


@datasets_app.command("collect")
def datasets_collect(
    env: Annotated[str, typer.Option(help="Gymnasium environment id, e.g. AdroitHandHammer-v1.")],
    episodes: Annotated[int, typer.Option(help="Episodes to roll out.")],
    dataset_id: Annotated[
        str, typer.Option("--id", help="Minari dataset id to write, e.g. local/hammer/random-v0.")
    ],
    policy: Annotated[
        str,
        typer.Option(help="random (uniform actions), smooth (correlated random actions), swingup (scripted, "
                          "Pendulum-v1 only) or a directory written by `sbrnn child train --save`."),
    ] = "random",
    seed: Annotated[int, typer.Option(help="Reset seeds of the episodes and the random policy's draws.")] = 0,
    max_steps: Annotated[int | None, typer.Option(help="Cap each episode at this many steps.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Roll a policy out in a real environment and write the episodes as a local Minari dataset
    (arrow), ready as task minari:<id>."""
    from sbrnn.datasets.envs import POLICIES
    from sbrnn.datasets.minari_io import collect

    actor: Any = policy
    if policy not in POLICIES and Path(policy).is_dir():
        from sbrnn.child.rollout import load_policy

        def actor(environment):
            return load_policy(policy, environment)[0]

    with _progress_bars() as progress:
        summary = collect(dataset_id, env, episodes, actor, seed, max_steps, progress)
    if json_out:
        _print_json(summary)
        return
    table = Table(title=f"Minari dataset {dataset_id}", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key in ("path", "env_id", "policy", "seed", "episodes", "steps"):
        table.add_row(key, str(summary[key]))
    table.add_row("return", f"{summary['mean_return']:.2f} +- {summary['std_return']:.2f}")
    table.add_row("task", f"minari:{dataset_id}")
    console.print(table)


def _sizes_table(summary: dict, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("split", "sequences", "x", "y"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, shape in summary["shapes"].items():
        x_text = f"{shape['x']} {shape['x_dtype']}"
        table.add_row(split, f"{summary['sizes'][split]:,}", x_text, str(shape["y"]))
    return table


def _size_text(size: int | None) -> str:
    """Bytes as ``-`` (not built), ``512 B``, ``3.4 MB``, ..."""
    if size is None:
        return "-"
    value, unit = float(size), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


@datasets_app.command("list")
def datasets_list(json_out: JsonOpt = False) -> None:
    """Every task by family: input and output sizes, steps, loss, whether it builds offline here,
    and its cached data's size on disk at seed 0 and default options (- / null: not built); --json
    adds each task's source and description."""
    from sbrnn.datasets.registry import FAMILIES, get_info, task_names

    rows = [get_info(name).as_dict() for name in task_names()]
    if json_out:
        _print_json(rows)
        return
    table = Table(title="Tasks by family (sources and descriptions: --json or `sbrnn datasets info TASK`)",
                  title_justify="left")
    cols = ("name", "n_in", "n_out", "steps", "loss", "offline", "size_on_disk")
    shown = {"offline": lambda v: "yes" if v else "no", "size_on_disk": _size_text}
    cells = [[shown.get(c, str)(row[c]) for c in cols] for row in rows]
    for i, col in enumerate(cols):  # in a narrow terminal only the names fold
        heading = "size" if col == "size_on_disk" else col
        width = max([len(heading), *(len(r[i]) for r in cells)])
        table.add_column(heading, justify="left" if col in ("name", "loss", "offline") else "right",
                         no_wrap=col != "name", min_width=None if col == "name" else width, overflow="fold")
    order = {family: i for i, family in enumerate(FAMILIES)}
    families = sorted({row["family"] for row in rows}, key=lambda f: (order.get(f, len(order)), f))
    for family in families:
        if family != families[0]:
            table.add_section()
        table.add_row(f"[bold]{family}:[/bold]")
        for row, r in zip(rows, cells):
            if row["family"] == family:
                table.add_row(*r)
    console.print(table)


TaskArg = Annotated[str, typer.Argument(help="Task name (see `sbrnn datasets list`).")]
TaskSeedOpt = Annotated[int, typer.Option(help="Generation seed.")]


@datasets_app.command("build")
def datasets_build(
    task: TaskArg, task_option: TaskOptionOpt = None, seed: TaskSeedOpt = 0, json_out: JsonOpt = False
) -> None:
    """Generate a task into the cache (a progress bar while generating); a second build loads it."""
    import time

    from sbrnn.datasets.summary import task_summary

    start = time.perf_counter()
    built = _build_task(task, seed, _parse_task_options(task_option))
    summary = {**task_summary(built), "seconds": round(time.perf_counter() - start, 2),
               "cache": built.meta.get("cache"), "traits": built.traits}
    if json_out:
        _print_json(summary)
        return
    console.print(_sizes_table(summary, f"Task {task}: {built.n_in} in, {built.n_out} out, {built.steps} "
                                        f"steps, {built.loss}"))
    cache = summary["cache"]
    where = f"{'loaded from' if cache['hit'] else 'generated into'} {cache['path']}" if cache else "built"
    console.print(f"{where} in {summary['seconds']:.1f} s", soft_wrap=True)


@datasets_app.command("info")
def datasets_info(
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
    from sbrnn.datasets.cache import cache_root
    from sbrnn.datasets.registry import get_info, task_options
    from sbrnn.datasets.summary import task_summary

    info = get_info(task)
    built = _build_task(task, seed, _parse_task_options(task_option))
    summary = {**task_summary(built), "family": info.family, "description": info.description,
               "source": info.source, "options": task_options(info), "traits": built.traits,
               "meta": built.meta}
    if built.meta.get("generator") == "rad":
        from sbrnn.datasets.rad import write_preview

        path = preview or cache_root() / "previews" / f"{task}-{built.meta['cache']['key']}.png"
        summary["preview"] = str(write_preview(built, path))
    if json_out:
        _print_json(summary)
        return
    console.print(f"{task} ({info.family}): {info.description}", soft_wrap=True, markup=False)
    dims = f"{built.n_in} in, {built.n_out} out, {built.steps} steps, {built.loss}"
    console.print(_sizes_table(summary, dims))
    if "classes" in summary:
        table = Table(title="Class balance (sequences per class)", title_justify="left")
        table.add_column("split")
        for c in range(built.n_out):
            table.add_column(str(c), justify="right")
        for split, counts in summary["classes"].items():
            table.add_row(split, *(f"{n:,}" for n in counts))
        console.print(table)
    else:
        for split, stats in summary["targets"].items():
            console.print(f"{split} targets: mean {stats['mean']:.4f}, std {stats['std']:.4f}")
    traits = Table(title="Traits", caption="of the training split; baseline_loss: the best constant "
                   "predictor's validation loss", title_justify="left", caption_justify="left",
                   show_header=False)
    traits.add_column("trait", style="bold")
    traits.add_column("value", justify="right")
    for name, value in built.traits.items():
        traits.add_row(name, "-" if value is None else f"{value:.6g}")
    console.print(traits)
    if summary["options"]:
        listed = ", ".join(f"{k}={v}" for k, v in summary["options"].items())
        console.print(f"options (--task-option, defaults): {listed}", soft_wrap=True, markup=False)
    details = {k: v for k, v in built.meta.items() if k != "cache"}
    console.print(f"generation: {json.dumps(details, default=str)}", soft_wrap=True, markup=False)
    if "preview" in summary:
        console.print(f"preview: {summary['preview']}", soft_wrap=True)


# records -------------------------------------------------------------------------------------

RecordsArg = Annotated[Path, typer.Argument(help="Records directory (Parquet shards).")]


@contextlib.contextmanager
def _warnings_as_lines():
    """Warnings (an unreadable records file skipped, ...) as one ``warning: ...`` line each on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *args, **kwargs: err_console.print(
            f"warning: {message}", markup=False, soft_wrap=True, highlight=False
        )
        yield


def _fmt_loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@records_app.command("summary")
def records_summary(directory: RecordsArg, json_out: JsonOpt = False) -> None:
    """Counts by task and status; mean minimum validation loss by hidden-proportion and
    model-density bin per task (the paper's Tables III and IV), with run counts per bin."""
    from sbrnn import records_report

    with _warnings_as_lines():
        result = records_report.summary(records_report.load_frame(directory))
    if json_out:
        _print_json(result)
        return
    table = Table(title=f"{result['runs']} runs in {directory}", title_justify="left")
    for col in ("task", "ok", "diverged", "failed", "total"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for row in result["counts"]:
        table.add_row(row["task"], *(str(row[k]) for k in ("ok", "diverged", "failed", "total")))
    console.print(table)
    for task, views in result["tasks"].items():
        table = Table(
            title=f"{task}: mean minimum validation loss by bin (ok runs; diverged runs apart)",
            title_justify="left",
        )
        table.add_column("")
        for row in views["hidden_proportion"]:
            table.add_column(row["bin"], justify="right")
        for column, name in records_report.BINNED.items():
            rows = views[column]
            table.add_row(name, *(_fmt_loss(r["mean_min_val_loss"]) for r in rows))
            table.add_row("  runs (diverged)", *(f"{r['runs']} ({r['diverged']})" for r in rows))
        console.print(table)


@records_app.command("compact")
def records_compact(directory: RecordsArg, json_out: JsonOpt = False) -> None:
    """Merge a records directory's shards into one Parquet file per task, atomically (nothing is
    removed before the file holding it is written); readers and resume see the same runs."""
    from sbrnn.records import compact

    if not directory.is_dir():
        raise SbrnnError(f"records directory {str(directory)!r} is not a directory")
    with _warnings_as_lines():
        done = compact(directory)
    if json_out:
        _print_json(done.to_dict())
        return
    files = ", ".join(done.written) or "-"
    console.print(f"{done.runs} runs in {len(done.written)} compacted files ({files}); "
                  f"{done.files_read} files read, {done.files_removed} merged and removed")


@records_app.command("export")
def records_export(
    directory: RecordsArg,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write one CSV file (curves as JSON lists).")
    ] = None,
    parquet: Annotated[Path | None, typer.Option("--parquet", help="Write one Parquet file.")] = None,
) -> None:
    """Write every readable record into one CSV and/or one Parquet file."""
    from sbrnn import records_report

    if csv is None and parquet is None:
        raise SbrnnError("give --csv FILE or --parquet FILE (or both)")
    for flag, path, suffix in (("--csv", csv, ".csv"), ("--parquet", parquet, ".parquet")):
        if path is not None and path.suffix.lower() != suffix:
            raise SbrnnError(f"{flag} {str(path)!r} must end in {suffix}")
    with _warnings_as_lines():
        for path in (p for p in (csv, parquet) if p is not None):
            count = records_report.export(directory, path)
            console.print(f"{count} records written to {path}")


@records_app.command("plot")
def records_plot(
    directory: RecordsArg,
    out: Annotated[Path, typer.Option(help="Directory for the PNG files.")],
) -> None:
    """PNGs per task: Fig. 6 (validation curves by hidden proportion), Fig. 8 (minimum validation
    loss vs hidden proportion and model density), Fig. 7b/9b (vs the largest block's density)."""
    from sbrnn import records_report

    with _warnings_as_lines():
        frame = records_report.load_frame(directory)
    if frame.empty:
        raise SbrnnError(f"records directory {str(directory)!r} holds no readable records")
    for path in records_report.plot(frame, out):
        console.print(str(path))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
