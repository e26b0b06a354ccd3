"""The result table (phase | measure | figure | target | met? | note), as text or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from harness import Row

HEADERS = ("phase", "measure", "figure", "ratio", "target", "met?", "note")


def _met(row: Row) -> str:
    return {True: "yes", False: "NO", None: "-" if not row.target else "?"}[row.met]


def _cells(row: Row) -> tuple[str, ...]:
    cells = (row.phase, row.measure, row.figure, row.ratio or "-", row.target or "-")
    return (*cells, _met(row), row.note)


def machine_line(machine: dict[str, str]) -> str:
    """Where the figures come from, above the table."""
    return (
        f"machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"{machine['system']}, {machine['date']}, load {machine['load']} at the start"
    )


def table(rows: Sequence[Row], machine: dict[str, str] | None = None) -> str:
    lines = [HEADERS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS) - 1)]
    out = []
    for index, line in enumerate(lines):
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        out.append(" | ".join([*padded, line[-1]]).rstrip())
        if index == 0:
            out.append("-+-".join("-" * width for width in widths) + "-+-" + "-" * 4)
    top = [machine_line(machine)] if machine else []
    return "\n".join([*top, *out])


def write_json(
    rows: Sequence[Row], figures: dict[str, float], path: Path, machine: dict[str, str]
) -> None:
    payload = {"machine": machine, "rows": [asdict(row) for row in rows], "figures": figures}
    path.write_text(json.dumps(payload, indent=2) + "\n")
