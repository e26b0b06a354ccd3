"""Plain-text tables that fit the terminal: columns chosen and shortened, text cut with an
ellipsis, amounts aligned on the decimal point.

`render_table(columns, rows, width)` lays a table out in `width` characters; `width=None`
(`--wide`) shows every column in full. A table first drops its optional columns (highest
`drop` first), then shortens its shrinkable columns, widest first, each down to its
`shrink_to` width.
`terminal_width()` is the width to fit: `$COLUMNS`, else the terminal's, and no limit
when stdout is not a terminal (a pipe or a file gets whole lines).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

ELLIPSIS = "…"
GAP = "  "


@dataclass(frozen=True)
class Column:
    header: str
    shrink_to: int = 0  # > 0: may be cut, with an ellipsis, down to this many characters
    drop: int = 0  # > 0: left out when the table does not fit, highest first
    decimal: bool = False  # numbers, aligned on the decimal point
    right: bool = False  # right-aligned (counts, ids)


def terminal_width() -> int | None:
    """The width a table should fit: $COLUMNS, the terminal's, or None (no limit)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def cut(text: str, width: int) -> str:
    """`text` in at most `width` characters, its end replaced by an ellipsis if cut."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + ELLIPSIS if width > 0 else ""


def cut_lines(text: str, width: int | None) -> str:
    """Every line of `text` cut to `width` (None: unchanged)."""
    if width is None:
        return text
    return "\n".join(cut(line, width) for line in text.splitlines())


def _aligned_decimals(values: Sequence[str]) -> list[str]:
    """Numbers padded so their decimal points line up: ' 20.00', '  5', '100.5 '."""
    parts = [v.partition(".") for v in values]
    whole = max((len(p[0]) for p in parts), default=0)
    fraction = max((len(p[2]) + 1 if p[1] else 0 for p in parts), default=0)
    return [p[0].rjust(whole) + ((p[1] + p[2]).ljust(fraction) if fraction else "") for p in parts]


def render_table(
    columns: Sequence[Column], rows: Sequence[Sequence[object]], width: int | None
) -> str:
    """The table in `width` characters (None: in full). A cell may hold several lines."""
    cells = [[str(value).split("\n") for value in row] for row in rows]
    for index, column in enumerate(columns):
        if column.decimal:
            aligned = iter(_aligned_decimals([line for r in cells for line in r[index]]))
            for row in cells:
                row[index] = [next(aligned) for _ in row[index]]
    shown = list(range(len(columns)))
    sizes = [
        max([len(columns[i].header), *(len(line) for r in cells for line in r[i])]) for i in shown
    ]

    def total() -> int:
        return sum(sizes[i] for i in shown) + len(GAP) * (len(shown) - 1)

    if width is not None:
        for i in sorted((i for i in shown if columns[i].drop), key=lambda i: -columns[i].drop):
            if total() <= width:
                break
            shown.remove(i)
        while total() > width:
            shrinkable = [i for i in shown if 0 < columns[i].shrink_to < sizes[i]]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: sizes[i])
            sizes[widest] = max(columns[widest].shrink_to, sizes[widest] - (total() - width))

    def line(texts: Sequence[str]) -> str:
        out = []
        for i in shown:
            text = cut(texts[i], sizes[i])
            aligned = columns[i].right or columns[i].decimal
            out.append(text.rjust(sizes[i]) if aligned else text.ljust(sizes[i]))
        return GAP.join(out).rstrip()

    lines = [line([c.header for c in columns]), GAP.join("-" * sizes[i] for i in shown)]
    for row in cells:
        height = max(len(cell) for cell in row)
        for n in range(height):
            lines.append(line([cell[n] if n < len(cell) else "" for cell in row]))
    return "\n".join(lines)
