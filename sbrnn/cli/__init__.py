"""The ``sbrnn`` command line: each command parses its options, calls the library, renders the result.

One module per command group (:mod:`.child`, :mod:`.parent`, :mod:`.datasets`, :mod:`.records`);
shared options and their checks in :mod:`.options`, progress bars in :mod:`.progress`, every
table and JSON document in :mod:`.render`. Importing this package imports no torch: commands
import the library they call when they run.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Protocol, cast

import typer
from typer.core import TyperGroup

from sbrnn import __version__
from sbrnn.cli import child, datasets, parent, records
from sbrnn.cli.options import os_error_text, warnings_as_lines
from sbrnn.errors import SbrnnError


def _click_class(name: str) -> type[Exception]:
    """Click's exception class ``name`` as Typer raises it (Typer may vendor its own click)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


_ClickException = _click_class("ClickException")
_UsageError = _click_class("UsageError")


class _ClickError(Protocol):
    """What is used here of a ``ClickException`` (whichever click's class it is)."""

    exit_code: int

    def format_message(self) -> str: ...


class _OneLineErrors(TyperGroup):
    """Bad input of any kind ends in one line on stderr and exit status 2, never a traceback."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except _ClickException as exc:
            error = cast(_ClickError, exc)  # looked up at run time above, so typed as Exception
            message = " ".join(error.format_message().split())
            if message:  # empty after a group printed its own help
                typer.echo(f"error: {message}", err=True)
            sys.exit(2 if isinstance(exc, _UsageError) else error.exit_code)
        except SbrnnError as exc:
            typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
            sys.exit(2)
        except OSError as exc:  # a full disk, no permission, a read-only file system: not a traceback
            if isinstance(exc, BrokenPipeError):
                raise
            typer.echo(f"error: {os_error_text(exc)}", err=True)
            sys.exit(2)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(130)
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx):
        """Every command shows library warnings as one ``warning: ...`` line each
        (:func:`~sbrnn.cli.options.warnings_as_lines`); Ctrl-C in a command that does not report it
        itself: one line, exit status 130."""
        try:
            with warnings_as_lines():
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
app.add_typer(child.app, name="child")
app.add_typer(parent.app, name="parent")
app.add_typer(datasets.app, name="datasets")
app.add_typer(records.app, name="records")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sbrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Sparse block RNNs: plan, train and sweep children; fit parents that recommend them."""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point. ``kill`` (SIGTERM: what ``timeout`` and batch schedulers send)
    stops a command as Ctrl-C does: records written stay, a sweep's claims are released, exit 130.
    A background job of a non-interactive shell (``cmd &``) starts with Ctrl-C ignored, so SIGTERM
    is the clean way to stop one."""
    signal.signal(signal.SIGTERM, _interrupt)
    app()
