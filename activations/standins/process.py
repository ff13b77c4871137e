"""Run a stand-in as a subprocess (for `headwater demo` and crash tests) and talk to it."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from activations.standins.faults import Fault, FaultPlan

REPO_ROOT = Path(__file__).resolve().parents[2]


class StandinProcess:
    """A stand-in in its own process; `url` is known once `start()` returns."""

    def __init__(
        self,
        name: str,
        port: int = 0,
        state_file: str | os.PathLike[str] | None = None,
        faults: FaultPlan | None = None,
        config: dict[str, Any] | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.name = name
        self.state_file = Path(state_file) if state_file else None
        self.startup_timeout = startup_timeout
        self.args = [sys.executable, "-m", "activations.standins", name, "--port", str(port)]
        if state_file:
            self.args += ["--state-file", str(state_file)]
        if faults:
            self.args += ["--faults", json.dumps(faults.to_json())]
        if config:
            self.args += ["--config", json.dumps(config)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> StandinProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO_ROOT
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            if not ready:
                self.kill()
                self._close_pipes()
                raise TimeoutError(f"stand-in {self.name} printed no URL in time")
            chunk = os.read(self.proc.stdout.fileno(), 256)
            if not chunk:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.proc.wait(10)
                self._close_pipes()
                raise RuntimeError(f"stand-in {self.name} exited: {err[-2000:]}")
            line += chunk
        self.url = line.decode().strip().splitlines()[0]
        return self

    def state(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/__headwater/state", timeout=30).json()

    def flush_state(self) -> None:
        requests.post(f"{self.url}/__headwater/state", timeout=30).raise_for_status()

    def set_faults(self, plan: FaultPlan) -> None:
        r = requests.post(f"{self.url}/__headwater/faults", json={"plan": plan.to_json()},
                          timeout=10)
        r.raise_for_status()

    def script(self, fault: Fault, count: int = 1) -> None:
        body: dict[str, Any] = {"script": [{"fault": fault.to_json(), "count": count}]}
        requests.post(f"{self.url}/__headwater/faults", json=body, timeout=10).raise_for_status()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (state written on the way out), SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> StandinProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdout, self.proc.stderr) if self.proc else ():
            if pipe:
                pipe.close()
