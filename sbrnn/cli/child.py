"""``sbrnn child``: plan a weight space, train one child, evaluate a saved one, sweep many."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sbrnn.child import weight_space
from sbrnn.cli import progress as bars
from sbrnn.cli.options import (
    DENSITIES_HELP,
    DeviceOpt,
    InOpt,
    JsonOpt,
    OutOpt,
    TaskOptionOpt,
    check_counts,
    check_dims,
    check_output_dir,
    check_seeds,
    grid_option,
    task_options,
    warnings_as_lines,
    writing,
)
from sbrnn.cli.render import (
    Column,
    number,
    print_json,
    print_lines,
    render,
    render_fields,
    render_grid,
    render_plan,
)
from sbrnn.errors import SbrnnError

if TYPE_CHECKING:  # the library is imported where a command runs
    from sbrnn.child.checkpoint import Checkpointing

app = typer.Typer(help="Plan, train and sweep sparse block RNNs.", no_args_is_help=True)


@app.command("plan")
def plan(
    n_x: InOpt,
    n_y: OutOpt,
    budget: Annotated[
        float | None, typer.Option(help="Trainable-weight budget; sets h. Biases excluded.")
    ] = None,
    hidden: Annotated[int | None, typer.Option(help="Hidden size |h|, instead of --budget.")] = None,
    densities: Annotated[str, typer.Option(help=DENSITIES_HELP)] = "1",
    json_out: JsonOpt = False,
) -> None:
    """Show the weight space of one configuration: block shapes, densities, trainable counts."""
    check_dims(n_x, n_y)
    grid = grid_option(densities, "densities")
    assert grid is not None  # the option has a default
    if (budget is None) == (hidden is None):
        raise SbrnnError("give exactly one of --budget and --hidden")
    if hidden is not None:
        spec = weight_space.SparseBlockSpec(n_x, n_y, hidden, grid)
    else:
        assert budget is not None  # exactly one of the two, checked above
        spec = weight_space.SparseBlockSpec.from_budget(n_x, n_y, budget, grid)
    result = spec.plan(budget)
    if json_out:
        print_json(result)
    else:
        render_plan(result, f"Weight space, {n_x} in / {n_y} out")


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _record_fields(record, extra: dict[str, str]) -> list[tuple[str, str]]:
    """The key fields of a run record, and where its files went."""
    best = f" (epoch {record.best_epoch})" if record.best_epoch else ""
    lstm = " (biases inside the LSTM count)" if record.arch == "lstm" else ""
    fields = [
        ("status", record.status + (f": {record.error}" if record.error else "")),
        ("task", f"{record.n_x} in, {record.n_y} out, {record.steps} steps, {record.loss_kind}"),
        ("hidden size", str(record.h)),
        ("budget", _fmt(record.budget, ",.0f")),
        ("trainable", f"{record.trainable_total:,} weights + {record.bias_count:,} biases{lstm}"),
        ("hidden proportion", _fmt(record.hidden_proportion, ".3f")),
        ("model density", _fmt(record.model_density, ".3f")),
        ("epochs run", f"{len(record.val_loss)} of {record.epochs}"),
        ("min val loss", _fmt(record.min_val_loss) + best),
    ]
    if record.val_acc:
        fields.append(("best val acc", _fmt(max(record.val_acc), ".3f")))
    return fields + [
        ("test loss", _fmt(record.test_loss)),
        ("test acc", _fmt(record.test_acc, ".3f")),
        ("lr, batch, seed", f"{record.lr:g}, {record.batch_size}, {record.seed}"),
        ("wall time", f"{record.wall_seconds:.1f} s on {record.device}"),
        *extra.items(),
    ]


def _block_cells(record) -> list[list[str]]:
    """Realised trainable counts per block (mask nonzeros), with the densities that drew them."""
    return [
        [
            f"{getattr(record, f'trainable_{row}{col}'):,}  d={getattr(record, f'd_{row}{col}'):.2f}"
            for col in weight_space.COLS
        ]
        for row in weight_space.ROWS
    ]


def _checkpointing(
    run_id: str, every: int | None, directory: Path | None, save: Path | None
) -> tuple[Checkpointing | None, int]:
    """``child train``'s checkpoint settings (None without --checkpoint-every or --checkpoint) and
    the epoch a checkpoint already there ends (0: none), read now so that a bad one fails at once."""
    from sbrnn.child.checkpoint import Checkpointing, default_checkpoint_dir, load_checkpoint

    if every is None and directory is None:
        return None, 0
    folder = directory if directory is not None else default_checkpoint_dir(run_id, save)
    check_output_dir(folder, "--checkpoint")
    settings = Checkpointing(folder, every or 1, own_folder=directory is None)
    path = settings.path(run_id)
    return settings, load_checkpoint(path, run_id).epoch if path.exists() else 0


@app.command("train")
def train(
    task: Annotated[
        str | None, typer.Option(help="Registered task name (see `sbrnn datasets list`); default rad.")
    ] = None,
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
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Train a configuration saved by `sbrnn parent recommend --json` (or "
            "written in the same form); it sets arch, budget, lr, densities, means and stds.",
        ),
    ] = None,
    rank: Annotated[int, typer.Option(help="With --config: which of its configurations (1 = the top).")] = 1,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            help="Write a resumable checkpoint every N epochs; the same command after Ctrl-C or a kill "
            "resumes from the last one (same seed and --threads: the same curve)."
        ),
    ] = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Directory for the checkpoints (implies --checkpoint-every 1 unless given); default "
            "beside --save (SAVE.checkpoint), else $SBRNN_CACHE/checkpoints/RUN_ID.",
        ),
    ] = None,
    keep_checkpoint: Annotated[
        bool,
        typer.Option(
            "--keep-checkpoint", help="Keep the last checkpoint when the run ends (default: removed)."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train one child and show its record. Exit status 1 when the run diverged or failed."""
    from sbrnn.child.config import RunConfig, read_saved_configuration
    from sbrnn.child.model import resolve
    from sbrnn.child.train import resolve_device, train_run
    from sbrnn.datasets.summary import build_checked
    from sbrnn.records import write_record

    check_counts(threads=threads, checkpoint_every=checkpoint_every)
    check_seeds(seed=seed)
    if keep_checkpoint and checkpoint_every is None and checkpoint_dir is None:
        raise SbrnnError("--keep-checkpoint needs --checkpoint-every N or --checkpoint DIR")
    check_output_dir(records, "--records")
    check_output_dir(save, "--save")
    options = dict(
        task_options=task_options(task_option),
        activation=activation,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        patience=patience,
        precision=precision,
    )
    if config_file is not None:
        given = [
            flag
            for flag, value in (
                ("--arch", arch != "sbrnn"),
                ("--budget", budget),
                ("--hidden", hidden),
                ("--densities", densities),
                ("--balanced", balanced),
                ("--means", means),
                ("--stds", stds),
                ("--uniform-density", uniform_density),
                ("--lr", lr != 1e-3),
            )
            if value
        ]
        if given:
            raise SbrnnError(f"give either --config or {given[0]} (the configuration file sets it)")
        saved = read_saved_configuration(config_file, rank)
        task = task or saved.task or "rad"
        config = RunConfig.from_options(task=task, **{**options, **saved.fields})
    else:
        task = task or "rad"
        config = RunConfig.from_options(
            task=task,
            arch=arch,
            budget=budget,
            hidden=hidden,
            densities=grid_option(densities, "densities"),
            balanced=balanced,
            means=grid_option(means, "means"),
            stds=grid_option(stds, "stds"),
            uniform_density=uniform_density,
            lr=lr,
            **options,
        )
    resolve_device(device)
    checkpointing, resumed = _checkpointing(config.run_id(), checkpoint_every, checkpoint_dir, save)
    with bars.builder_bars(f"building task {task}") as progress:
        built = build_checked(task, seed, config.task_options, progress)
    resolve(config, built.n_x, built.n_y)  # a budget too small, bad densities: fail before training
    if checkpointing is not None and resumed:
        where = checkpointing.directory
        bars.note(f"resuming run {config.run_id()} after epoch {resumed} of {epochs} (checkpoint in {where})")
    bar = bars.EpochBar(epochs)
    saving = writing("--save", save) if save is not None else contextlib.nullcontext()
    try:
        with bar, saving:
            record = train_run(
                config,
                built,
                device=device,
                threads=threads,
                progress=bar,
                save=save,
                # kept by the run, removed below once its record and model are written
                checkpoint=None if checkpointing is None else replace(checkpointing, keep=True),
            )
    except KeyboardInterrupt:
        done = max(bar.done, resumed)
        what = "nothing written (--records and --save take finished runs only); the same command "
        if checkpointing is not None and checkpointing.path(config.run_id()).exists():
            what += f"resumes from the last checkpoint in {checkpointing.directory}"
        else:
            what += "trains the run again"
        bars.note(f"interrupted after {done} of {epochs} epochs: {what}")
        raise typer.Exit(130) from None
    record.origin = "train" if config_file is None else "config"
    if config_file is not None:
        record.label = saved.label
    extra = {}
    if records is not None:
        with writing("--records", records):
            extra["record"] = str(write_record(record, records))
    if save is not None:
        extra["saved model"] = str(save) if record.status == "ok" else "not saved (the run did not end ok)"
    if checkpointing is not None:
        if keep_checkpoint or record.status == "failed":
            extra["checkpoint"] = str(checkpointing.path(record.run_id))
        else:
            checkpointing.remove(record.run_id)
    if json_out:
        print_json(record)
    else:
        title = f"Run {record.run_id}: {record.arch} on {record.task}"
        render_fields(_record_fields(record, extra), title=title)
        if record.arch != "lstm" and record.trainable_hx is not None:
            render_grid(
                {"x": record.n_x, "h": record.h, "y": record.n_y},
                _block_cells(record),
                title="Trainable weights per block (realised masks)",
            )
    if record.status != "ok":
        raise typer.Exit(1)


@app.command("evaluate")
def evaluate(
    model: Annotated[Path, typer.Option(help="A directory written by `sbrnn child train --save`.")],
    task: Annotated[
        str | None, typer.Option(help="Registered task name; default the task the model was trained on.")
    ] = None,
    task_option: TaskOptionOpt = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Task seed; default the training run's seed for its own task. With --env: the "
            "episodes' reset seed, default 0."
        ),
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
    check_seeds(seed=seed)
    if env is not None:
        if task is not None or task_option or device is not None:
            raise SbrnnError("--task, --task-option and --device do not apply with --env")
        _evaluate_in_env(model, env, episodes, 0 if seed is None else seed, max_steps, json_out)
        return
    from sbrnn.child.evaluate import evaluate_model

    with bars.builder_bars(f"building task {task or 'of the model'}") as progress:
        result = evaluate_model(model, task, task_options(task_option), seed, device, progress)
    if json_out:
        print_json(result)
        return
    fields = [
        ("task", result.task),
        ("seed", result.seed),
        ("sequences", result.sequences),
        ("loss_kind", result.loss_kind),
        ("test loss", _fmt(result.test_loss)),
        ("test acc", _fmt(result.test_acc, ".3f")),
    ]
    render_fields(fields, title=f"Model {model} ({result.arch}, run {result.run_id})")


@contextlib.contextmanager
def _bar_from_first_episode(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A counter bar drawn from the first episode done on, so that the model and environment are
    checked (a child that is not a policy, an unknown environment) before any bar appears."""
    with contextlib.ExitStack() as stack:
        bar: list[Callable[[int], None]] = []

        def advance(n: int) -> None:
            if not bar:
                bar.append(stack.enter_context(bars.counter(description, total)))
            bar[0](n)

        yield advance


def _evaluate_in_env(
    model: Path, env: str, episodes: int, seed: int, max_steps: int | None, json_out: bool
) -> None:
    """``child evaluate --env``: roll the saved child out and show its returns and score."""
    from sbrnn.child.rollout import evaluate_in_env

    with _bar_from_first_episode(f"{env} episodes", episodes) as advance:
        result = evaluate_in_env(model, env, episodes, seed, max_steps, advance)
    if json_out:
        print_json(result)
        return
    fields = [
        ("trained on", result.task),
        ("episodes", f"{episodes} (seed {seed}, mean length {result.mean_length:.0f} steps)"),
        ("return", f"{result.mean_return:.2f} +- {result.std_return:.2f}"),
    ]
    if result.mean_normalised_score is not None:
        fields += [
            ("normalised score", f"{result.mean_normalised_score:.2f} +- {result.std_normalised_score:.2f}"),
            (
                "reference",
                f"min {result.ref_min_score:g}, max {result.ref_max_score:g} ({result.ref_source})",
            ),
        ]
    else:
        fields.append(("normalised score", "- (no reference scores for this environment)"))
    render_fields(fields, title=f"Model {model} in {env} (run {result.run_id})")


PLAN_COLUMNS = (
    Column("label", "run"),
    Column("task"),
    number("budget", fmt=",.0f"),
    Column("arch"),
    number("h"),
    Column("densities", fmt=weight_space.format_grid),
    number("lr", fmt=".6g"),
    Column("run_id", "run id"),
    Column("recorded"),
)


@app.command("sweep")
def sweep(
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
        typer.Option(
            "--plan",
            help="A plan file (TOML: tasks, options, budgets, draws, epochs) instead of "
            "--task/--budget/--runs; see sweeps/zoo-v1.toml.",
        ),
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
    lstm_lr: Annotated[
        list[float] | None,
        typer.Option(
            "--lstm-lr",
            help="Add the LSTM at this learning rate per budget, labelled 'lstm lr LR'; repeat for several.",
        ),
    ] = None,
    stratify_hp: Annotated[
        str | None,
        typer.Option(
            "--stratify-hp",
            metavar="K",
            help="Add K draws per hidden-proportion bin (<.2, .2-.4, .4-.6, .6-.8, >=.8) at each task's "
            "dims and budget, drawn from --space until they land in it; 'K:BIN,BIN' for some bins only. "
            "Labelled 'stratified BIN I'.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences per batch.")] = 16,
    task_option: TaskOptionOpt = None,
    workers: Annotated[int, typer.Option(help="Local worker processes (1 = in this process).")] = 1,
    threads: Annotated[int, typer.Option(help="Torch threads per worker.")] = 1,
    population: Annotated[
        int, typer.Option(help="Train up to this many compatible runs together in one batched step.")
    ] = 1,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Address of a running Dask scheduler: tls://HOST:PORT (with --tls-ca-file, --tls-cert, "
            "--tls-key, or Dask's distributed.comm.tls configuration), or tcp://HOST:PORT on loopback "
            "or a trusted private network."
        ),
    ] = None,
    tls_ca_file: Annotated[
        Path | None,
        typer.Option("--tls-ca-file", help="With --scheduler tls://: the CA certificate(s) (PEM)."),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="With --scheduler tls://: this client's certificate (PEM)."),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            "--tls-key", help="With --scheduler tls://: this client's private key (PEM) if not in --tls-cert."
        ),
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
    from sbrnn.child import sampling
    from sbrnn.child.sweep import coordinator
    from sbrnn.child.sweep.executors import TlsFiles, make_executor
    from sbrnn.child.sweep.plan import describe_plan, plan_sweep

    check_counts(threads=threads, workers=workers, population=population, local_cluster=local_cluster)
    tls = None
    if tls_ca_file or tls_cert or tls_key:
        if scheduler is None:
            raise SbrnnError("--tls-ca-file, --tls-cert and --tls-key apply to --scheduler tls://HOST:PORT")
        if tls_ca_file is None or tls_cert is None:
            raise SbrnnError(
                "give --tls-ca-file and --tls-cert together (and --tls-key unless the certificate holds it)"
            )
        for flag, path in (("--tls-ca-file", tls_ca_file), ("--tls-cert", tls_cert), ("--tls-key", tls_key)):
            if path is not None and not path.is_file():
                raise SbrnnError(f"{flag} {str(path)!r} does not exist; allowed: a PEM file")
        tls = TlsFiles(str(tls_ca_file), str(tls_cert), None if tls_key is None else str(tls_key))
    executor = make_executor(workers, threads, population, scheduler, local_cluster, tls=tls)
    if plan is not None:
        given = [
            flag
            for flag, value in (
                ("--task", task),
                ("--budget", budget),
                ("--runs", runs),
                ("--task-option", task_option),
                ("--stratify-hp", stratify_hp),
                ("--lstm-lr", lstm_lr),
            )
            if value
        ]
        if given:
            raise SbrnnError(f"give either --plan or {given[0]} (a plan file holds tasks, budgets, runs)")
        from sbrnn.child.sweep.plan_file import load_plan

        planned = load_plan(plan).planned_runs()
    else:
        if not task or not budget or runs is None:
            raise SbrnnError("give --task, --budget and --runs, or a plan file with --plan")
        pins = sampling.Pins(
            densities=grid_option(densities, "densities"),
            means=grid_option(means, "means"),
            stds=grid_option(stds, "stds"),
            lr=lr,
        )
        planned = plan_sweep(
            task,
            budget,
            runs,
            epochs=epochs,
            seed=seed,
            space=space,
            pins=pins,
            include_baselines=include_baselines,
            balanced=balanced,
            batch_size=batch_size,
            task_options=task_options(task_option),
            stratify=stratify_hp,
            lstm_lrs=lstm_lr or (),
        )
    if records.exists() and not records.is_dir():
        raise SbrnnError(f"--records {str(records)!r} is a file; allowed: a directory (new or existing)")
    if dry_run:
        render(
            describe_plan(planned, records),
            PLAN_COLUMNS,
            json_out=json_out,
            title=f"{len(planned)} planned runs into {records}",
        )
        return
    progress = bars.SweepBar()

    def start(report: coordinator.SweepReport) -> None:
        bars.note(
            f"{report.planned} planned runs, {report.already_done} already recorded in {records}, "
            f"{report.to_run} to run on {executor.name}"
        )
        progress.begin(report.to_run)

    with warnings_as_lines(), progress:
        report = coordinator.run_sweep(
            planned,
            records,
            executor,
            retry_failed=retry_failed,
            on_start=start,
            on_record=progress,
            population=population,
        )
    if json_out:
        print_json(report.as_dict())
    else:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.statuses.items())) or "nothing new"
        print_lines(
            f"{report.finished} runs recorded in {records} ({counts}); "
            f"{report.already_done + report.finished + report.by_others} of {report.planned} planned are done"
            + (f" ({report.by_others} recorded by another sweep meanwhile)" if report.by_others else "")
        )
    if report.interrupted:
        resume = shlex.join(["sbrnn", *sys.argv[1:]])
        bars.note(f"interrupted; records so far are kept. Resume with:\n  {resume}")
        raise typer.Exit(130)


TRIAL_COLUMNS = (
    number("number", "trial"),
    Column("label"),
    number("value", "min val loss", ".4f"),
    number("epochs"),
    Column("arch"),
    number("lr", fmt=".3g"),
    Column("densities"),
    Column("run_id", "run id"),
)


def _tune_fields(summary) -> list[tuple[str, str]]:
    """The summary of ``sbrnn child tune`` as key/value rows."""
    states = ", ".join(f"{n} {s}" for s, n in summary.states.items()) or "none"
    cut = f" ({summary.interrupted} of them cut short: not counted)" if summary.interrupted else ""
    best, warm = summary.best, summary.warm_start
    warm_line = None
    if warm.parent is not None:
        warm_line = (
            f"parent {warm.parent}: top {warm.top}, {warm.already} already in the study, "
            f"{warm.enqueued} enqueued"
        )
    return [
        ("study", f"{summary.study} in {summary.storage}"),
        ("trials", f"{summary.finished} of {summary.target} trained, {summary.ran} now; {states}{cut}"),
        ("best", "-" if best is None else f"{best.value:.4f} (trial {best.number}, {best.label})"),
        ("warm start", "; ".join(line for line in [warm_line, *warm.notes] if line) or "none"),
        ("pruner, space", f"{summary.pruner}, {summary.space}"),
        ("architectures", ", ".join(summary.archs)),
        ("records", summary.records),
    ]


@app.command("tune")
def tune(
    task: Annotated[str, typer.Option(help="Registered task name (see `sbrnn datasets list`).")],
    budget: Annotated[float, typer.Option(help="Trainable-weight budget of every child (biases excluded).")],
    trials: Annotated[int, typer.Option(help="Trials that train, in the study in total.")],
    records: Annotated[Path, typer.Option(help="Records directory: one Parquet shard per trial.")],
    task_option: TaskOptionOpt = None,
    epochs: Annotated[int, typer.Option(help="Epochs per trial.")] = 25,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage: a database URL (sqlite:///study.db) or a journal file path; "
            "default RECORDS/optuna.journal."
        ),
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name; default tune-TASK-BUDGET.")] = None,
    warm_start: Annotated[
        int | None, typer.Option(help="Enqueue the parent's top K recommendations first (default 10).")
    ] = None,
    no_warm_start: Annotated[
        bool, typer.Option("--no-warm-start", help="Enqueue no recommendations.")
    ] = False,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Parent directory for the warm start (default: the shipped one)."),
    ] = None,
    pruner: Annotated[str, typer.Option(help="median, asha or none.")] = "median",
    space: Annotated[str, typer.Option(help="Search space: paper (the sweep's ranges) or wide.")] = "paper",
    archs: Annotated[
        str,
        typer.Option(
            help="Architectures the study chooses between, comma-separated: sbrnn, lstm (an LSTM trial "
            "draws only its learning rate)."
        ),
    ] = "sbrnn",
    batch_size: Annotated[int, typer.Option(help="Sequences per batch.")] = 16,
    seed: Annotated[
        int, typer.Option(help="Task data, masks, init and data order of every trial; seeds the sampler.")
    ] = 0,
    sampler_seed: Annotated[
        int | None, typer.Option(help="Seed the sampler apart from the data (default: --seed).")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Stop a trial after this many epochs without a new best.")
    ] = None,
    device: DeviceOpt = None,
    threads: Annotated[int, typer.Option(help="Torch intra-op threads.")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Tune a child with Optuna (the tune extra): one child per trial, warm-started by a parent, pruned
    on its curve, each recorded. Rerun the same command to resume."""
    from sbrnn.child import tune as tuning
    from sbrnn.child.train import resolve_device
    from sbrnn.datasets.summary import build_checked

    optuna = tuning.require_optuna()
    check_counts(trials=trials, epochs=epochs, threads=threads, patience=patience)
    check_seeds(seed=seed)
    if no_warm_start and warm_start is not None:
        raise SbrnnError("give either --warm-start K or --no-warm-start")
    if records.exists() and not records.is_dir():
        raise SbrnnError(f"--records {str(records)!r} is a file; allowed: a directory (new or existing)")
    check_output_dir(records, "--records")
    settings = tuning.TuneSettings(
        task=task,
        budget=budget,
        trials=trials,
        records=records,
        task_options=task_options(task_option),
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        storage=storage,
        study=study,
        warm_start=0 if no_warm_start else tuning.DEFAULT_WARM_START if warm_start is None else warm_start,
        pruner=pruner,
        space=space,
        device=device,
        threads=threads,
        patience=patience,
        sampler_seed=sampler_seed,
        archs=tuple(a.strip() for a in archs.split(",")),
    )
    resolve_device(device)
    parent, parent_note = tuning.load_warm_start_parent(model) if settings.warm_start else (None, None)
    with bars.builder_bars(f"building task {task}") as progress:
        built = build_checked(task, seed, settings.task_options, progress)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the bar and the summary show each trial

    def start(found) -> None:
        warm = found.warm_start
        bars.note(f"study {found.study} in {found.storage}: {found.finished} of {found.target} trials done")
        if warm.parent is not None:
            bars.note(f"warm start from parent {warm.parent}: {warm.enqueued} enqueued")
        for line in warm.notes:
            bars.note(line)
        bar.begin(found.finished, found.target)

    with bars.TuneBar() as bar:
        summary = tuning.tune(
            settings,
            built,
            parent=parent,
            parent_note=parent_note,
            on_start=start,
            on_trial=bar,
            on_wait=bar.wait,
        )
    if json_out:
        print_json(summary)
    else:
        render_fields(_tune_fields(summary), title=f"Study {summary.study}: {task} at budget {budget:,.0f}")
        rows = [
            {**r.to_dict(), "arch": r.arch, "lr": r.params.get("lr"), "densities": r.densities or "-"}
            for r in summary.top
        ]
        if rows:
            render(rows, TRIAL_COLUMNS, title="Best trials (complete, ok)")
    if summary.stopped:
        resume = shlex.join(["sbrnn", *sys.argv[1:]])
        bars.note(f"interrupted; the study keeps its trials. Resume with:\n  {resume}")
        raise typer.Exit(130)
