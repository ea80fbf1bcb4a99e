"""The throughput chart of docs/benchmarks.md: sign-ups/s (and reads/s) against concurrency, as a PNG.

matplotlib with the Agg backend (no display needed); installed by the project's ``bench`` extra, which
scripts/bench.sh installs.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.headline import PEER, db_name, read_runs, signup_runs
from bench.scenarios import UNCACHED, Run, ScenarioResult

STYLE = {
    ("Keyhall", "sqlite"): ("tab:blue", "o", "-"),
    ("Keyhall", "postgres"): ("tab:green", "s", "-"),
    (PEER, "sqlite"): ("tab:orange", "^", "--"),
    (PEER, "postgres"): ("tab:red", "v", "--"),
    (UNCACHED, "sqlite"): ("tab:blue", "o", ":"),
    (UNCACHED, "postgres"): ("tab:green", "s", ":"),
}


def render(results: list[ScenarioResult], path: Path) -> bool:
    """Draw the chart into ``path``; False (and no file) when no sweep ran."""
    signups = [run for _, run in signup_runs(results)]
    if not signups:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reads = read_runs(results)
    columns = 2 if reads else 1
    figure, axes = plt.subplots(1, columns, figsize=(6.4 * columns, 4.6), squeeze=False)
    left = axes[0][0]
    _lines(left, signups)
    limits = [run.limit.hashes_per_s for run in signups if run.limit is not None]
    if limits:
        levels = sorted({run.load.concurrency for run in signups})
        by_level = [
            statistics.median(
                r.limit.hashes_per_s for r in signups if r.limit is not None and r.load.concurrency == level
            )
            for level in levels
        ]
        left.plot(
            levels,
            by_level,
            color="black",
            linestyle=":",
            marker="x",
            label="argon2id limit, all cores (median reading)",
        )
    left.set_title("Sign-ups")
    left.set_ylabel("sign-ups/s  (limit: hashes/s)")
    _axis(left)
    if reads:
        right = axes[0][1]
        _lines(right, reads)
        right.set_title("Reads with a valid token (get-profile, /users/me)")
        right.set_ylabel("reads/s")
        _axis(right)
    figure.suptitle("Throughput against concurrency (2 uvicorn workers, 2 cores shared with the load)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _lines(axis: Any, runs: list[Run]) -> None:
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for run in runs:
        series.setdefault((run.server, run.backend), []).append((run.load.concurrency, run.load.throughput))
    order = list(STYLE)
    for key, points in sorted(
        series.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99
    ):
        color, marker, line = STYLE.get(key, ("gray", ".", "-"))
        points.sort()
        axis.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            color=color,
            marker=marker,
            linestyle=line,
            label=f"{key[0]}, {db_name(key[1])}",
        )


def _axis(axis: Any) -> None:
    axis.set_xscale("log", base=2)
    axis.set_xlabel("concurrent clients")
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    ticks = [1, 16, 64]
    axis.set_xticks(ticks)
    axis.set_xticklabels([str(t) for t in ticks])
