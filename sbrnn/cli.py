"""The ``sbrnn`` command line: parses, calls the library, renders. No logic beyond that."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from sbrnn import __version__
from sbrnn.child import spec as weight_space
from sbrnn.errors import SbrnnError

console = Console()
err_console = Console(stderr=True)


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


# parent --------------------------------------------------------------------------------------


@parent_app.command("recommend")
def parent_recommend(
    n_in: InOpt,
    n_out: OutOpt,
    budget: Annotated[float, typer.Option(help="Trainable-weight budget (biases excluded).")] = 100_000,
    target: Annotated[float, typer.Option(help="Target hidden proportion, in (0, 1).")] = 0.5,
    json_out: JsonOpt = False,
) -> None:
    """Recommend a balanced configuration for a task from its dims and a budget alone."""
    from sbrnn.parent.recommend import a_priori

    _check_dims(n_in, n_out)
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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
