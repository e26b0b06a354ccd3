"""What every phase shares: the run's settings, its work directory, and its result rows.

Measures nothing itself. A phase appends `Row`s (one per figure) to the `Context` and
may publish a figure in `Context.figures` for a later phase to compare against (the
bridge's ingest is judged against the empty endpoint's ceiling of the same run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from presign import DEFAULT_SECRET


@dataclass(frozen=True)
class Settings:
    quick: bool
    warmup_s: float
    full_speed_s: float
    fixed_s: float
    e2e_s: float
    drain_backlog: int
    growth_sizes: tuple[int, int]
    cost_s: float = 20
    saturation_step_s: float = 5
    bare_posts: int = 3_000
    fixed_rates: tuple[int, ...] = (500, 2000)
    e2e_rate: int = 500
    cost_rate: int = 200  # the moderate rate of the cost phase and of the floors beside it
    saturation_rates: tuple[int, ...] = (100, 200, 300, 400, 600, 800, 1000, 1200, 1600)
    saturation_p99_ms: float = 100
    connections: int = 32
    wrk_threads: int = 1
    use_wrk: bool = True
    secret: str = DEFAULT_SECRET

    @classmethod
    def make(
        cls, *, quick: bool, connections: int = 32, wrk_threads: int = 1, use_wrk: bool = True
    ) -> Settings:
        if quick:
            return cls(
                quick=True,
                warmup_s=0.5,
                full_speed_s=2,
                fixed_s=2,
                e2e_s=2,
                drain_backlog=2_000,
                growth_sizes=(1_000, 20_000),
                cost_s=4,
                saturation_step_s=1.5,
                bare_posts=1_000,
                connections=connections,
                wrk_threads=wrk_threads,
                use_wrk=use_wrk,
            )
        return cls(
            quick=False,
            warmup_s=2,
            full_speed_s=10,
            fixed_s=10,
            e2e_s=10,
            drain_backlog=50_000,
            growth_sizes=(1_000, 1_000_000),
            connections=connections,
            wrk_threads=wrk_threads,
            use_wrk=use_wrk,
        )


@dataclass(frozen=True)
class Row:
    """One line of the result table. `met` is None when the figure has no target; `ratio`
    is the figure against its floor of the same run (e.g. "0.31x empty"), "" if none."""

    phase: str
    measure: str
    figure: str
    target: str = ""
    met: bool | None = None
    note: str = ""
    ratio: str = ""


@dataclass
class Context:
    settings: Settings
    workdir: Path
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        path = self.workdir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def subdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)


def ratio(value: float | None, floor: float | None, floor_name: str) -> str:
    """`value` as a multiple of `floor` ("0.31x empty"); "" when either is missing."""
    if value is None or not floor:
        return ""
    return f"{value / floor:.2f}x {floor_name}"


def micros(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def per_second(value: float) -> str:
    return f"{value:,.0f}/s"


def millis(value: float) -> str:
    return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms"


def mebibytes(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MB"
