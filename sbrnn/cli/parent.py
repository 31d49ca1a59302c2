"""``sbrnn parent``: fit a parent on records, predict a configuration's curve, evaluate, recommend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sbrnn.child import weight_space
from sbrnn.child.tune import DEFAULT_WARM_START
from sbrnn.cli import progress as bars
from sbrnn.cli.options import (
    DENSITIES_HELP,
    JsonOpt,
    TaskOptionOpt,
    check_dims,
    check_output_dir,
    check_output_file,
    check_seeds,
    grid_option,
    held_warnings,
    task_options,
    writing,
)
from sbrnn.cli.render import Column, number, print_json, print_lines, render, render_plan
from sbrnn.errors import SbrnnError

app = typer.Typer(help="Predict loss curves and recommend configurations.", no_args_is_help=True)

ParentOpt = Annotated[
    Path | None,
    typer.Option(
        "--model", help="Parent directory from `sbrnn parent fit` (default: the shipped zoo parent)."
    ),
]
KindOpt = Annotated[
    str | None, typer.Option("--kind", help="Model of the parent: rf, xgb or mlp (default: its best).")
]
StepsOpt = Annotated[
    int | None, typer.Option("--steps", help="Sequence length T (default: from the parent's nearest task).")
]
LossOpt = Annotated[
    str | None, typer.Option("--loss", help="cross_entropy or mse (default: from the parent's nearest task).")
]
TaskOpt = Annotated[
    str | None,
    typer.Option("--task", help="A registered task: its dims, length, loss and traits (built if need be)."),
]
PlotOpt = Annotated[
    Path | None, typer.Option("--plot", help="Write the predicted curves with bands as a PNG.")
]

METRIC_COLUMNS = (
    Column("model", fold=True),
    Column("scope", fold=True),
    number("n"),
    number("r2_min", "R^2 log min", ".3f"),
    number("spearman_min", "rho min", ".3f"),
    number("rmse_log_curve", "RMSE log curve", ".3f"),
    number("top10_precision", "top 10%", ".2f"),
)
RANKING_COLUMNS = (
    Column("model"),
    number("groups"),
    number("regret1", "regret@1", ".3f"),
    number("random1", "random@1", ".3f"),
    number("regret3", "regret@3", ".3f"),
    number("random3", "random@3", ".3f"),
    number("regret10", "regret@10", ".3f"),
    number("percentile", "top-1 pct", ".2f"),
    number("spearman", "rho", ".3f"),
    number("equivalent", "random-equiv", ".1f"),
)
CONVERGES_COLUMNS = (
    Column("model"),
    number("n", "runs"),
    number("converged"),
    number("brier", "Brier", ".3f"),
    number("brier_constant", "Brier of the rate", ".3f"),
    number("accuracy", fmt=".3f"),
)
_MODEL_NAMES = {"hidden_proportion": "hp alone", "constant": "constant"}


def _counts_line(counts: dict) -> str:
    status = ", ".join(f"{n} {s}" for s, n in counts["status"].items())
    excluded = ", ".join(f"{n} {why}" for why, n in counts["excluded"].items()) or "none"
    return (
        f"runs {counts['runs']} over {counts.get('tasks', '?')} tasks: {status}; converged "
        f"{counts['converged']} (curve targets), not converged {counts['not_converged']} (converges "
        f"label only); left out: {excluded}"
    )


def _render_fit(report: dict, folds: int) -> None:
    from sbrnn.parent.evaluate import report_rows

    rows = [{**r, "model": _MODEL_NAMES.get(r["model"], r["model"])} for r in report_rows(report)]
    render(
        [r for r in rows if r["scope"] == "pooled"],
        METRIC_COLUMNS,
        title=f"Held-out runs ({folds}-fold): relative log best-so-far curve",
    )
    ranking = report.get("leave_one_task_out") or {}
    if ranking:
        render(
            [
                {
                    "model": _MODEL_NAMES.get(model, model),
                    "groups": s["groups"],
                    "regret1": s["median_regret"]["1"],
                    "random1": s["median_random_regret"]["1"],
                    "regret3": s["median_regret"]["3"],
                    "random3": s["median_random_regret"]["3"],
                    "regret10": s["median_regret"]["10"],
                    "percentile": s["median_percentile"],
                    "spearman": s["median_spearman"],
                    "equivalent": s["median_random_equivalent"],
                }
                for model, s in ranking.items()
            ],
            RANKING_COLUMNS,
            title="Leave one task out: ranking inside unseen tasks (medians over task x budget)",
        )
    render(
        [{**m, "model": kind} for kind, m in report["converges"].items()],
        CONVERGES_COLUMNS,
        title="Converges classifier (held out, k-fold)",
    )
    band = (report.get("band") or {}).get(report["default_model"]) or {}
    lines = [_counts_line(report["counts"])]
    if band:
        lines.append(
            f"band: {band['coverage']:.0%} of held-out runs lay inside the models' own one-sigma spread; "
            f"widened by {band['floor']:.3f} (log units, in quadrature) so that 68% do"
        )
    lines += [f"warning: {w}" for w in report["warnings"]]
    lines.append(
        f"default model {report['default_model']} (lowest leave-one-task-out regret@1; k-fold R^2 "
        f"without other tasks); recommendations ordered by the {report['ranked_by']}"
    )
    print_lines(*lines)


@app.command("fit")
def fit(
    records: Annotated[
        list[Path], typer.Argument(help="Records directories (shards or compacted files), one or more.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Parent directory to write.")],
    model: Annotated[str, typer.Option("--model", help="rf, xgb, mlp or all.")] = "xgb",
    folds: Annotated[int, typer.Option(help="Folds of the cross-validation (>= 2).")] = 5,
    trees: Annotated[
        int | None, typer.Option(help="Trees (rf, default 1000) or boosting rounds (xgb, default 300).")
    ] = None,
    members: Annotated[int | None, typer.Option(help="Ensemble members of xgb and mlp (default 5).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of folds, bootstrap rows and model initialisation.")] = 0,
    jobs: Annotated[int, typer.Option(help="Threads for rf and xgb (-1: every core).")] = 1,
    name: Annotated[str, typer.Option(help="The parent's name, shown by every recommendation.")] = "custom",
    json_out: JsonOpt = False,
) -> None:
    """Fit a parent on run records; report k-fold and leave-one-task-out metrics beside baselines."""
    from sbrnn.parent.evaluate import check_folds, fit_and_evaluate
    from sbrnn.parent.features import records_in
    from sbrnn.parent.models import KINDS, CurveRegressor
    from sbrnn.parent.store import save_parent

    if model != "all" and model not in KINDS:
        raise SbrnnError(f"--model {model!r} is unknown; allowed: {', '.join(KINDS)}, all")
    kinds = list(KINDS) if model == "all" else [model]
    check_folds(folds)
    check_seeds(seed=seed)
    for kind in kinds:  # bad sizes fail before the records are read
        CurveRegressor(kind, n_estimators=trees, n_members=members).params()
    check_output_dir(out, "--out")  # before the fit, not after it
    with held_warnings():
        runs = records_in(*records)
    progress, on_step = bars.steps("fitting")
    started = False

    def step(description: str, total: int) -> None:
        """The bar starts with the first step: records too few to fit fail before any bar."""
        nonlocal started
        if not started:
            progress.start()
            started = True
        on_step(description, total)

    try:
        parent, report = fit_and_evaluate(
            runs,
            kinds,
            folds=folds,
            trees=trees,
            members=members,
            seed=seed,
            n_jobs=jobs,
            name=name,
            on_step=step,
        )
    finally:
        if started:
            progress.stop()
    with writing("--out", out):
        manifest = save_parent(parent, out, report)
    if json_out:
        print_json({"parent": str(out), "manifest": str(manifest), **report})
        return
    _render_fit(report, folds)
    print_lines(f"written to {out}")


def _load(model: Path | None):
    from sbrnn.parent.store import load_parent, load_shipped

    return load_shipped() if model is None else load_parent(model)


def _context(parent, n_x, n_y, steps, loss, task, task_option, seed):
    """The task's context: a registered task built (dims, length, loss, traits), or dims with
    ``steps``/``loss`` (taken from the parent's nearest task where not given); and a note."""
    from sbrnn.parent.features import TaskContext
    from sbrnn.parent.recommend import infer_context

    if task is not None:
        if n_x is not None or n_y is not None or steps is not None or loss is not None:
            raise SbrnnError("give either --task or --in/--out (with --steps and --loss)")
        from sbrnn.datasets.summary import build_checked

        with bars.builder_bars(f"building task {task}") as progress:
            built = build_checked(task, seed, task_options(task_option), progress)
        return TaskContext.of_task(built), None
    if n_x is None or n_y is None:
        raise SbrnnError("give --in and --out (the task's input and output sizes), or --task")
    check_dims(n_x, n_y)
    return infer_context(parent, n_x, n_y, steps, loss)


def _parent_line(parent, kind: str) -> str:
    digest = parent.records_sha256[:12] if parent.records_sha256 else "?"
    return (
        f"parent {parent.name} ({kind}; fitted {parent.fitted_at or '?'} on {len(parent.training_runs)} "
        f"runs of {len(parent.tasks)} tasks, data sha256 {digest}...)"
    )


def _prediction_row(label: str, scored) -> dict:
    p = scored.prediction
    return {
        "rank": scored.rank or None,
        "config": label,
        "arch": scored.arch,
        "h": scored.h,
        "densities": scored.densities,
        "hidden_proportion": scored.hidden_proportion,
        "lr": scored.lr,
        "min": p.min_val_loss,
        "band": f"{p.min_low:.3g}-{p.min_high:.3g}",
        "p_converge": p.p_converge,
        "source": scored.source,
    }


PREDICTION_COLUMNS = (
    number("rank", "#"),
    Column("arch"),
    number("h"),
    Column("densities", fmt=lambda g: weight_space.format_grid(g) if g else "-"),
    number("hidden_proportion", "hp", ".3f"),
    number("lr", fmt=".2e"),
    number("min", "pred. min", ".4g"),
    Column("band", justify="right"),
    number("p_converge", "P(ok)", ".2f"),
    Column("source", "from"),
)


@app.command("recommend")
def recommend(
    n_x: Annotated[int | None, typer.Option("--in", help="Input size |x| of the task.")] = None,
    n_y: Annotated[int | None, typer.Option("--out", help="Output size |y| of the task.")] = None,
    budget: Annotated[float, typer.Option(help="Trainable-weight budget (biases excluded).")] = 100_000,
    steps: StepsOpt = None,
    loss: LossOpt = None,
    task: TaskOpt = None,
    task_option: TaskOptionOpt = None,
    model: ParentOpt = None,
    a_priori: Annotated[
        bool, typer.Option("--a-priori", help="The paper's rule from the dims alone (no parent).")
    ] = False,
    target: Annotated[float, typer.Option(help="With --a-priori: target hidden proportion in (0, 1).")] = 0.5,
    top: Annotated[int, typer.Option(help="Configurations to show.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the random candidates (and of --task).")] = 0,
    kind: KindOpt = None,
    plot: PlotOpt = None,
    optuna_storage: Annotated[
        str | None,
        typer.Option(
            help="Also enqueue the top configurations into --study of this Optuna storage (a database "
            "URL such as sqlite:///study.db, or a journal file path); params d_hx.., mu_hx.., sigma_hx.., lr."
        ),
    ] = None,
    study: Annotated[str | None, typer.Option(help="With --optuna-storage: the study's name.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Recommend configurations for a task from its dims (or a registered task) and a budget: ranked
    by the shipped zoo parent (or --model), with the a-priori rule and the baselines beside them."""
    check_seeds(seed=seed)
    if a_priori:
        _a_priori(n_x, n_y, budget, target, json_out)
        return
    from sbrnn.parent.recommend import recommend as rank

    check_output_file(plot, "--plot")
    parent, _ = _load(model)
    context, note = _context(parent, n_x, n_y, steps, loss, task, task_option, seed)
    result = rank(parent, context, budget, top=top, seed=seed, kind=kind, task_name=task)
    if optuna_storage is not None or study is not None:
        from sbrnn.child.tune import enqueue_recommendations

        count = enqueue_recommendations(optuna_storage, study, result)
        bars.note(f"enqueued {count} of the top {len(result.top)} into study {study!r} ({optuna_storage})")
    if plot is not None:
        from sbrnn.parent.plots import plot_predictions

        curves = [(f"#{s.rank} {s.source}", s.prediction) for s in result.top]
        curves += [("a-priori", result.a_priori.prediction)]
        curves += [(name, s.prediction) for name, s in result.baselines.items()]
        with writing("--plot", plot):
            plot_predictions(
                curves,
                plot,
                f"{parent.name}: {context.n_x} in, {context.n_y} out, T = {context.steps}, "
                f"budget {budget:,.0f}",
            )
    tune = result.tune_command(None if model is None else str(model))
    if json_out:
        plotted = None if plot is None else str(plot)
        print_json({**result.to_dict(), "tune_command": tune, "note": note, "plot": plotted})
        return
    where = result.extrapolation
    rows = [_prediction_row("recommended", s) for s in result.top]
    rows += [_prediction_row("a-priori", result.a_priori)]
    rows += [_prediction_row(name, s) for name, s in result.baselines.items()]
    render(
        rows,
        PREDICTION_COLUMNS,
        title=f"Recommended for {context.n_x} in, {context.n_y} out, T = "
        f"{context.steps}, {context.loss_kind}, budget {budget:,.0f}",
    )
    lines = [_parent_line(parent, result.parent["model"])]
    if note:
        lines.append(note)
    if result.mode == "learned":
        lines.append(
            f"ranked by the parent: the nearest zoo task is {where.nearest_task} (distance "
            f"{where.distance:.2f}; the zoo's tasks lie within {where.limit:.2f} of each other)"
        )
    else:
        why = "; ".join(where.outside) or f"distance {where.distance:.2f} > {where.limit:.2f}"
        lines.append(
            f"outside the parent's tasks ({why}; nearest {where.nearest_task}): a-priori fallback, the "
            "paper's balanced configuration first, then its family as the parent ranks it"
        )
    if not (context.traits or {}).get("baseline_loss"):
        lines.append(
            "losses assume the constant predictor scores log(n_y) (cross-entropy) or 1 (MSE on "
            "standardised targets); give --task for the task's own"
        )
    lines += [
        "pred. min: predicted minimum validation loss, band one sigma; P(ok): probability of converging",
        f"train the top-1: {result.train_command()}",
        f"or tune from the top {DEFAULT_WARM_START} (the tune extra): {tune}",
    ]
    if plot is not None:
        lines.append(f"curves: {plot}")
    print_lines(*lines)


BASELINE_COLUMNS = (
    Column("arch"),
    number("hidden", "h"),
    Column("densities"),
    number("total_trainable", "total trainable", ","),
    number("hidden_proportion", "hidden proportion", ".3f"),
    number("model_density", "model density", ".3f"),
)


def _a_priori(n_x: int | None, n_y: int | None, budget: float, target: float, json_out: bool) -> None:
    from sbrnn.parent.recommend import a_priori

    if n_x is None or n_y is None:
        raise SbrnnError("--a-priori needs --in and --out")
    check_dims(n_x, n_y)
    result = a_priori(n_x, n_y, budget, target)
    if json_out:
        print_json(result)
        return
    rec = result["recommended"]
    render_plan(
        rec,
        f"Balanced configuration: block {rec['sparsified_block']} sparsified, target "
        f"hidden proportion {target:g}",
    )
    rows = []
    for name, plan in [("balanced", rec), *result["baselines"].items()]:
        if "densities" in plan:
            rows.append({**plan, "arch": name, "densities": weight_space.format_grid(plan["densities"])})
        else:
            rows.append(
                {
                    "arch": name,
                    "hidden": plan["hidden"],
                    "densities": "LSTM, proj = n_y",
                    "total_trainable": plan["total_trainable"],
                }
            )
    render(rows, BASELINE_COLUMNS, title=f"Baselines at budget {budget:,.0f}")


CURVE_COLUMNS = (
    number("fraction", "of epochs", ".3f"),
    number("predicted", fmt=".4g"),
    number("low", fmt=".4g"),
    number("high", fmt=".4g"),
)


@app.command("predict")
def predict(
    budget: Annotated[float, typer.Option(help="Trainable-weight budget (biases excluded); sets h.")],
    n_x: Annotated[int | None, typer.Option("--in", help="Input size |x| of the task.")] = None,
    n_y: Annotated[int | None, typer.Option("--out", help="Output size |y| of the task.")] = None,
    arch: Annotated[str, typer.Option(help="sbrnn, dense, uniform or lstm.")] = "sbrnn",
    densities: Annotated[str, typer.Option(help=DENSITIES_HELP + " sbrnn only.")] = "1",
    means: Annotated[str, typer.Option(help="Init means of kept entries (same form).")] = "0",
    stds: Annotated[str, typer.Option(help="Init stds of kept entries (same form).")] = "0.05",
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    steps: StepsOpt = None,
    loss: LossOpt = None,
    task: TaskOpt = None,
    task_option: TaskOptionOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of --task's data.")] = 0,
    model: ParentOpt = None,
    kind: KindOpt = None,
    plot: PlotOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Predict one configuration's best-so-far validation-loss curve (with a band) and its minimum."""
    from sbrnn.parent.recommend import configuration, extrapolation

    check_seeds(seed=seed)
    check_output_file(plot, "--plot")
    grid_option(densities, "densities")  # each in (0, 1], naming the flag
    grids = {
        name: weight_space.parse_grid(text, name)
        for name, text in (("densities", densities), ("means", means), ("stds", stds))
    }
    parent, _ = _load(model)
    context, note = _context(parent, n_x, n_y, steps, loss, task, task_option, seed)
    config = configuration(arch, context.n_x, context.n_y, budget, lr, **grids)
    pred = parent.predict_configs([config], context, kind)[0]
    where = extrapolation(parent, context, budget)
    if plot is not None:
        from sbrnn.parent.plots import plot_predictions

        with writing("--plot", plot):
            plot_predictions(
                [(arch, pred)],
                plot,
                f"{parent.name}: {context.n_x} in, {context.n_y} out, budget {budget:,.0f}",
            )
    result = {
        "parent": _parent_line(parent, parent.kind(kind)),
        "arch": arch,
        "h": config.h,
        "task": {"n_x": context.n_x, "n_y": context.n_y, "steps": context.steps, "loss": context.loss_kind},
        "note": note,
        "extrapolation": where.to_dict(),
        **pred.to_dict(),
    }
    if json_out:
        print_json(result)
        return
    from sbrnn.parent.plots import FRACTIONS

    rows = [
        {"fraction": f, "predicted": m, "low": lo, "high": hi}
        for f, m, lo, hi in zip(FRACTIONS, pred.curve, pred.curve_low, pred.curve_high)
    ]
    render(
        rows,
        CURVE_COLUMNS,
        title=f"Predicted best validation loss so far ({arch}, h = {config.h}, "
        f"{context.loss_kind}, T = {context.steps})",
    )
    lines = [
        result["parent"],
        f"minimum {pred.min_val_loss:.4g} (band {pred.min_low:.4g} to {pred.min_high:.4g}); P(converges) "
        f"{pred.p_converge:.2f}",
    ]
    if note:
        lines.append(note)
    if not where.inside:
        lines.append(
            f"warning: outside the parent's tasks ({'; '.join(where.outside) or 'too far from all'}); "
            "the prediction extrapolates"
        )
    print_lines(*lines)


@app.command("evaluate")
def evaluate(
    records: Annotated[Path, typer.Argument(help="Records directory the parent did not see.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for fig10.png, curves.png and metrics.json.")],
    model: ParentOpt = None,
    kind: KindOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Metrics of a parent on unseen records, Fig. 10 (predicted vs actual minimum) and predicted-vs-actual
    curve overlays of held-out runs."""
    from sbrnn.io import atomic_write_text
    from sbrnn.parent.evaluate import evaluate_parent
    from sbrnn.parent.features import records_in
    from sbrnn.parent.plots import plot_curve_overlays, plot_predicted_vs_actual

    check_output_dir(out, "--out")
    parent, _ = _load(model)
    with held_warnings():
        runs = records_in(records)
    report, arrays = evaluate_parent(parent, runs, kind)
    pooled = report["unseen"][report["model"]]["pooled"]
    r2 = "-" if pooled["r2_min"] is None else f"{pooled['r2_min']:.3f}"
    rho = "-" if pooled["spearman_min"] is None else f"{pooled['spearman_min']:.3f}"
    title = (
        f"Fig. 10: {parent.name} ({report['model']}) on {pooled['n']} unseen runs; R^2 {r2}, Spearman {rho}"
    )
    with writing("--out", out):
        report["figure"] = str(plot_predicted_vs_actual(arrays, out / "fig10.png", title))
        report["curves"] = str(
            plot_curve_overlays(arrays, out / "curves.png", f"{parent.name}: held-out curves")
        )
        atomic_write_text(out / "metrics.json", json.dumps(report, indent=2) + "\n")
    if json_out:
        print_json(report)
        return
    from sbrnn.parent.evaluate import report_rows

    render(
        [{**r, "model": report["model"]} for r in report_rows(report)],
        METRIC_COLUMNS,
        title=f"{parent.name} on {records}",
    )
    print_lines(
        f"{_counts_line(report['counts'])}; {report['counts']['seen_in_training']} runs the parent "
        f"trained on were left out",
        f"band: {report['band_coverage']:.0%} of the runs inside one sigma",
        f"figures: {report['figure']}, {report['curves']}",
    )
