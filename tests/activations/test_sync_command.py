"""`headwater sync` (headwater/commands/sync.py) on a real warehouse file and receiver."""

from __future__ import annotations

from pathlib import Path

import duckdb
import yaml
from batch_receiver import SECRET, BatchReceiver
from click.testing import CliRunner
from synctools import make_audience, member

from headwater.commands.sync import sync
from headwater.config import Settings
from headwater.snapshots import publish


def _setup(tmp_path: Path, receiver: BatchReceiver) -> dict[str, str]:
    db = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(db))
    make_audience(con, [member(i) for i in range(5)])
    con.close()
    # The CLI reads published snapshots, as after `headwater build`.
    publish(Settings.from_env({"HEADWATER_DUCKDB_PATH": str(db)}))
    syncs = tmp_path / "syncs.yml"
    syncs.write_text(yaml.safe_dump({"syncs": [{
        "name": "hook", "audience": "audience_test", "channel": "email", "mode": "mirror",
        "destination": {"kind": "webhook", "credentials": {"signing_secret": "HOOK_SECRET"}},
        "identifiers": {"email": "email"}, "max_attempts": 1,
        "retry": {"total": 1, "backoff_factor": 0.01},
    }]}))
    return {"HEADWATER_DUCKDB_PATH": str(db), "HEADWATER_SYNCS_FILE": str(syncs),
            "HOOK_SECRET": SECRET, "HEADWATER_WEBHOOK_BASE_URL": receiver.url,
            "COLUMNS": "250"}


def test_cli_dry_run_run_dead_letters_and_replay(tmp_path, receiver):
    env = _setup(tmp_path, receiver)
    runner = CliRunner()
    out = runner.invoke(sync, ["--list"], env=env)
    assert out.exit_code == 0 and "hook" in out.output
    out = runner.invoke(sync, ["hook", "--dry-run"], env=env)
    assert out.exit_code == 0, out.output
    assert "add 5" in out.output and receiver.request_times == []
    receiver.reject_profiles = {"p1"}
    out = runner.invoke(sync, ["hook"], env=env)
    assert out.exit_code == 1 and "dead-lettered" in out.output
    out = runner.invoke(sync, ["hook", "--dead-letters"], env=env)
    assert "p1" in out.output and "invalid recipient" in out.output
    receiver.reject_profiles = set()
    out = runner.invoke(sync, ["hook", "--replay-dead-letters"], env=env)
    assert out.exit_code == 0, out.output
    assert set(receiver.members) == {f"p{i}" for i in range(5)}


def test_cli_errors_are_clear(tmp_path, receiver):
    env = _setup(tmp_path, receiver)
    out = CliRunner().invoke(sync, ["nope"], env=env)
    assert out.exit_code != 0 and "No sync named 'nope'" in out.output
    out = CliRunner().invoke(sync, [], env=env)
    assert out.exit_code != 0 and "Give a sync NAME" in out.output
