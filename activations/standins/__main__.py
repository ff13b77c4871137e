"""`python -m activations.standins NAME --port N`: serve one stand-in until killed.

The first line on stdout is the base URL (the port is chosen by the OS with --port 0).
SIGTERM/SIGINT stop it cleanly and write the state file one last time.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import signal
import sys
import threading
from typing import Any

from activations.standins import REGISTRY, standin_class
from activations.standins.faults import FaultPlan


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m activations.standins", description=__doc__)
    p.add_argument("name", choices=sorted(REGISTRY))
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    p.add_argument("--state-file", help="JSON snapshot of the state, rewritten on change")
    p.add_argument("--faults", help="FaultPlan as JSON, e.g. '{\"rate_429\": 0.1, \"seed\": 1}'")
    p.add_argument("--config", help="config overrides as JSON, e.g. '{\"api_key\": \"k\"}'")
    p.add_argument("--validation", choices=["full", "sample", "off"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cls = standin_class(args.name)
    config: Any = cls.default_config()
    overrides: dict[str, Any] = json.loads(args.config) if args.config else {}
    if args.validation:
        overrides["validation"] = args.validation
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        print(f"unknown config field(s) for {args.name}: {unknown}", file=sys.stderr)
        return 2
    config = dataclasses.replace(config, **overrides)
    plan = FaultPlan.from_json(json.loads(args.faults)) if args.faults else None
    standin = cls(config, faults=plan, port=args.port, state_file=args.state_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # This process holds only the stand-in's state: collecting it again and again is what made
    # a 1M-member run slow, so new state is frozen out of the collector as it accumulates.
    gc.set_threshold(100_000, 50, 100)
    standin.start()
    print(standin.url, flush=True)
    try:
        while not stop.wait(0.5):
            gc.freeze()
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
