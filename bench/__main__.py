"""``python -m bench [--quick] [--only NAME ...] [--output PATH]``: run the benchmarks, write the report.

A full run writes docs/benchmarks.md and its chart docs/benchmarks-throughput.png. A partial run
(``--quick`` or ``--only``) prints its report and writes files only when ``--output`` is given (the
chart next to it, named after it), so that a smoke run never replaces the published figures.
Exit status 1 when a scenario failed to run or a check failed (the report says which).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from bench import chart as bench_chart
from bench import facts, report
from bench.scenarios import FULL, NAMES, QUICK, SCENARIOS, ScenarioResult, close_limit, run_scenario

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = QUICK if args.quick else FULL
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    partial = args.quick or bool(args.only)
    output: Path | None = args.output or (None if partial else DEFAULT_OUTPUT)
    mode = ("quick (smoke run)" if args.quick else "full") + (
        f", only {', '.join(s.name for s in chosen)}" if args.only else ""
    )
    command = os.environ.get("BENCH_COMMAND") or shlex.join(["python", "-m", "bench", *sys.argv[1:]])

    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so that finally blocks stop servers, drop databases
    run_facts = facts.gather(command)
    workdir = Path(tempfile.mkdtemp(prefix="keyhall-bench-"))
    results: list[ScenarioResult] = []
    try:
        for scenario in chosen:
            print(f"bench: {scenario.name} ...", file=sys.stderr, flush=True)
            result = run_scenario(scenario, sizes, workdir)
            results.append(result)
            print(f"bench: {scenario.name} {_one_line(result)}", file=sys.stderr, flush=True)
    finally:
        close_limit()
        if all(r.error is None for r in results):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"bench: server logs kept in {workdir}", file=sys.stderr)

    chart: str | None = None
    if output is not None:  # the chart goes next to the report, named after it
        chart_path = output.with_name(f"{output.stem}-throughput.png")
        if bench_chart.render(results, chart_path):
            chart = chart_path.name
            print(f"bench: wrote {_shown(chart_path)}", file=sys.stderr)
    text = report.render(run_facts, sizes, mode, results, chart)
    if output is None:
        print(text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        print(f"bench: wrote {_shown(output)}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the keyhall benchmarks; a full run writes docs/benchmarks.md.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the report (default: docs/benchmarks.md for a full run, stdout otherwise)",
    )
    return parser


def _one_line(result: ScenarioResult) -> str:
    if result.error is not None:
        return "FAILED: " + result.error.strip().splitlines()[-1]
    parts = [
        f"{run.backend} {run.load.throughput:.1f} req/s p50 {run.load.percentile_ms(50):.0f} ms "
        f"{dict(sorted(run.load.counts().items()))}"
        for run in result.runs
    ]
    if result.hashing:
        h = result.hashing
        parts.append(f"{h.median_ms:.1f} ms/hash, {h.hashes_per_s:.1f} hashes/s at {h.threads} threads")
    failed = [c.name for run in result.runs for c in run.checks if not c.ok]
    if failed:
        parts.append(f"FAILED CHECKS: {', '.join(failed)}")
    return f"({result.duration_s:.0f} s): " + "; ".join(parts)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
