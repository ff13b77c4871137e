"""Run benchmarks, print one table per benchmark, write JSON to benchmarks/results/.

Every benchmark compares against a baseline measured in the same run (a ratio), because these
machines are noisy: an absolute number from another day means little.

    python -m benchmarks                 # all of them, at the sizes the issues ask for
    python -m benchmarks identity        # one of them
    python -m benchmarks --quick         # small sizes, to check that they run
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

# name -> module under benchmarks/ exposing `run(quick: bool) -> list[dict[str, Any]]`
BENCHMARKS: dict[str, str] = {
    "sync": "benchmarks.bench_sync",
    "identity": "benchmarks.bench_identity",
    "propensity": "benchmarks.bench_propensity",
    "sensor": "benchmarks.bench_sensor",
    "collector": "benchmarks.bench_collector",
    "fastpath": "benchmarks.bench_fastpath",
}

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _print_table(console: Console, name: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=name)
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    # At its natural width: a log or a pipe gets 80 columns from rich, which would squash a
    # benchmark with many fields into ellipses.
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if natural > console.width:
        console = Console(width=natural, file=console.file)
    console.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default all: {', '.join(BENCHMARKS)})"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that they run")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
    console = Console()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        started = time.time()
        rows = module.run(quick=args.quick)
        _print_table(console, name, rows)
        out = RESULTS_DIR / f"{name}.json"
        out.write_text(
            json.dumps(
                {
                    "benchmark": name,
                    "quick": args.quick,
                    "started_at": started,
                    "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
                    "rows": rows,
                },
                indent=2,
                default=str,
            )
        )
        console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
