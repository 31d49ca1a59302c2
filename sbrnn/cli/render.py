"""The one way commands show results: tables of rows, key/value tables, the weight-space grid, JSON.

Every table is printed on a console at least as wide as the table's narrowest layout, so numbers,
run ids and task names never break in the middle, in a narrow terminal or a pipe alike; only
columns of free text (``Column(fold=True)``, the values of a key/value table) wrap, between words.
With ``json_out`` a command prints the same rows as JSON instead.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

MISSING = "-"
"""How a missing value (None) is shown in a table."""


@dataclass(frozen=True)
class Column:
    """One column of a table: the row key it shows, its header, justification and number format.

    ``fmt`` is a format spec applied to numbers (``",.0f"``, ``".3f"``) or a function of the value;
    strings are shown as they are and None as :data:`MISSING`. ``fold`` marks free text, the only
    kind of column that may wrap (between words); every other column keeps each value on one line.
    """

    key: str
    header: str | None = None
    justify: Literal["left", "right", "center"] = "left"
    fmt: str | Callable[[Any], str] | None = None
    fold: bool = False

    def cell(self, value: Any) -> str:
        """``value`` as this column shows it."""
        if value is None:
            return MISSING
        if callable(self.fmt):
            return self.fmt(value)
        if self.fmt is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            return format(value, self.fmt)
        return str(value)


def number(key: str, header: str | None = None, fmt: str | None = None) -> Column:
    """A right-justified column of numbers (``fmt`` as in :class:`Column`)."""
    return Column(key, header, "right", fmt)


def _plain(row: Any) -> dict:
    """A row as a dict: mappings as they are, typed results through their ``to_dict()``."""
    return dict(row) if isinstance(row, Mapping) else row.to_dict()


def print_json(obj: Any) -> None:
    """``obj`` (typed results through ``to_dict()``) as indented JSON on stdout."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    elif isinstance(obj, (list, tuple)):
        obj = [item.to_dict() if hasattr(item, "to_dict") else item for item in obj]
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def print_lines(*lines: str) -> None:
    """Plain lines of text on stdout (never wrapped, never read as markup)."""
    for line in lines:
        sys.stdout.write(f"{line}\n")


def _print_table(table: Table) -> None:
    """``table`` on stdout, on a console as wide as the terminal or the table's narrowest layout,
    whichever is wider (a pipe counts as 80 columns, or ``$COLUMNS``)."""
    terminal = Console()
    narrowest = Measurement.get(terminal, terminal.options.update_width(1_000_000), table).minimum
    Console(width=max(terminal.width, narrowest)).print(table)


class _Heading(str):
    """A row of a table that heads a section: shown in bold, after a rule."""


def _print_rows(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str] | _Heading],
    *,
    title: str | None = None,
    caption: str | None = None,
    show_header: bool = True,
    bold_names: bool = False,
) -> None:
    """Rows of cell texts (or section headings) as a table under ``columns``: a column that does not
    fold is at least as wide as its widest line, so that it never wraps or loses characters."""
    table = Table(
        title=title, caption=caption, title_justify="left", caption_justify="left", show_header=show_header
    )
    for i, column in enumerate(columns):
        header = column.key if column.header is None else column.header
        lines = [header] if show_header else []
        for row in rows:
            if not isinstance(row, _Heading):
                lines += row[i].splitlines()
            elif i == 0:
                lines.append(f"{row}:")
        widest = max(map(cell_len, lines), default=0)
        table.add_column(
            header,
            justify=column.justify,
            no_wrap=not column.fold,
            overflow="fold",
            min_width=None if column.fold else widest,
            style="bold" if bold_names and i == 0 else None,
        )
    for row in rows:
        if isinstance(row, _Heading):
            if table.row_count:
                table.add_section()
            table.add_row(Text(f"{row}:", style="bold"))
        else:
            table.add_row(*(Text(cell) for cell in row))
    _print_table(table)


def render(
    rows: Sequence[Any],
    columns: Sequence[Column] | None = None,
    *,
    json_out: bool = False,
    title: str | None = None,
    caption: str | None = None,
    group: str | None = None,
) -> None:
    """Print ``rows`` (dicts, or typed results with ``to_dict()``) as a table, or as JSON.

    Args:
        rows: one mapping (or typed result) per row.
        columns: what the table shows, in order; None shows every key of the first row. JSON
            always holds the whole rows.
        json_out: print the rows as a JSON list instead of a table.
        title, caption: above and below the table.
        group: a key whose value heads a section of the table each time it changes (rows come
            sorted by it); that key is then not a column.
    """
    plain = [_plain(row) for row in rows]
    if json_out:
        print_json(plain)
        return
    if columns is None:
        columns = [Column(key) for key in (plain[0] if plain else {}) if key != group]
    cells: list[Sequence[str] | _Heading] = []
    heading = None
    for row in plain:
        if group is not None and (heading is None or row[group] != heading):
            heading = _Heading(row[group])
            cells.append(heading)
        cells.append([column.cell(row.get(column.key)) for column in columns])
    _print_rows(columns, cells, title=title, caption=caption)


def render_fields(
    fields: Mapping[str, Any] | Sequence[tuple[str, Any]],
    *,
    title: str | None = None,
    caption: str | None = None,
    values: Column | None = None,
) -> None:
    """A key/value table (a record's fields, a summary): names in bold, values as ``values`` shows
    them (default: text that may wrap between words)."""
    values = values or Column("value", fold=True)
    pairs = fields.items() if isinstance(fields, Mapping) else fields
    rows = [[name, values.cell(value)] for name, value in pairs]
    _print_rows(
        [Column("field"), values], rows, title=title, caption=caption, show_header=False, bold_names=True
    )


def render_grid(
    sizes: Mapping[str, int], cells: Sequence[Sequence[str]], *, title: str, caption: str | None = None
) -> None:
    """The weight space as the paper's Fig. 4: rows h, y; columns x, h, y, each headed with its size.

    ``sizes`` maps ``x``, ``h`` and ``y`` to their sizes; ``cells[i][j]`` is the text of block
    (row i, column j), possibly of several lines.
    """
    columns = [Column(""), *(Column(f"{name} ({sizes[name]})", justify="right") for name in ("x", "h", "y"))]
    rows = [[f"{name} ({sizes[name]})", *row] for name, row in zip(("h", "y"), cells)]
    _print_rows(columns, rows, title=title, caption=caption)


def render_plan(plan: Mapping[str, Any], title: str) -> None:
    """A configuration's weight space (:meth:`sbrnn.child.weight_space.SparseBlockSpec.plan`) as Fig. 4:
    each block's shape, density and trainable count; the totals below."""
    cells = [
        [
            f"{r}x{c}  d={plan['densities'][i][j]:.2f}\n{plan['trainable'][i][j]:,} trainable"
            for j, (r, c) in enumerate(shapes)
        ]
        for i, shapes in enumerate(plan["shapes"])
    ]
    budget = f"  budget {plan['budget']:,.0f}" if plan.get("budget") else ""
    caption = (
        f"h = {plan['hidden']}  total trainable {plan['total_trainable']:,}{budget}\n"
        f"model density {plan['model_density']:.3f}  "
        f"hidden proportion {plan['hidden_proportion']:.3f}"
    )
    sizes = {"x": plan["n_x"], "h": plan["hidden"], "y": plan["n_y"]}
    render_grid(sizes, cells, title=title, caption=caption)
