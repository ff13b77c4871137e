"""The Dagster UI in a real browser: `dagster dev` serves the code location, headless Chromium
opens the asset graph and the automation (sensors) page. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from orch_world import World

from headwater.commands.ui import CODE_LOCATION, ui_command, ui_environment
from headwater.config import Settings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed: scripts/browser.sh installs it "
        "(.ci/run calls it)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # dagster dev runs a webserver, a daemon and code servers in its own session.
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _start_dagster_dev(
    env: dict[str, str], cwd: Path, log: Path,
) -> tuple[subprocess.Popen[bytes], str] | None:
    """`dagster dev` on a free port, once it answers; None (stopped, log kept) if it does not
    within 150 s. The port is free when chosen but another test process can take it before
    the webserver binds: the caller tries again on a new one."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        proc = subprocess.Popen(ui_command("127.0.0.1", port), env=env, cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 150
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if requests.get(url + "/server_info", timeout=2).ok:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    _stop(proc)
    return None


@pytest.fixture(scope="module")
def dagster_ui(world: World) -> Iterator[str]:
    env = ui_environment(Settings.from_env())
    log = world.root / "dagster-dev.log"
    for _attempt in range(2):
        started = _start_dagster_dev(env, world.root, log)
        if started:
            break
    else:
        raise AssertionError(f"dagster dev did not start twice; its log ends:\n"
                             f"{log.read_text(errors='replace')[-4000:]}")
    proc, url = started
    try:
        yield url
    finally:
        _stop(proc)


def _open(page, url: str, expect: list[str], shot: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(url, wait_until="domcontentloaded", timeout=90_000)
    for text in expect:
        # The code location loads lazily; the first page may take a while to show assets.
        page.get_by_text(text, exact=True).first.wait_for(timeout=90_000)
    skip = page.get_by_role("button", name="Skip")
    if skip.count():  # the first-visit newsletter dialog
        skip.first.click()
    page.screenshot(path=str(ARTIFACTS / shot), full_page=True)


def test_ui_shows_models_syncs_and_sensors(dagster_ui: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    location = f"{dagster_ui}/locations/{CODE_LOCATION}/asset-groups"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            # The global asset graph: one box per group (dbt folders, raw sources, syncs).
            _open(page, f"{dagster_ui}/asset-groups",
                  ["staging", "audiences", "syncs", "journeys", "measurement"],
                  "ui-asset-graph.png")
            # dbt models in their group's graph.
            _open(page, f"{location}/marts", ["customer_profiles", "identity_map"],
                  "ui-asset-graph-marts.png")
            # Sync assets, downstream of their audiences.
            _open(page, f"{location}/syncs",
                  ["sync_state__winback_hook", "sync_state__cart_email_hook",
                   "audience_loyalty_winback"],
                  "ui-asset-graph-syncs.png")
            # One asset per journey; the fast-path sensor reports their activity.
            _open(page, f"{location}/journeys", ["cart_abandonment", "welcome"],
                  "ui-asset-graph-journeys.png")
            # Sensors and schedules.
            _open(page, f"{dagster_ui}/automation",
                  ["audience_sensor__winback_hook", "audience_sensor__cart_email_hook",
                   "fastpath_sensor", "alert_on_run_failure", "dbt_build_schedule"],
                  "ui-automation.png")
        finally:
            browser.close()
