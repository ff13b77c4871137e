"""`headwater collect`: serve the Segment HTTP Tracking API, landing next to the warehouse."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from collector.config import CollectorConfig, ConfigError
from collector.server import Collector
from headwater.gcfreeze import freeze_periodically


@click.command()
@click.option("--port", type=int, default=8088, show_default=True, help="TCP port; 0 = any free.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--landing-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Landing folder (default $HEADWATER_LANDING_DIR or <warehouse dir>/landing).",
)
@click.option("--verbose", is_flag=True, help="Log every request (path and status only).")
def collect(port: int, host: str, landing_dir: Path | None, verbose: bool) -> None:
    """Collect events from Segment SDKs (write keys from $HEADWATER_WRITE_KEY).

    Point an SDK's host at the printed URL. Every message is answered only once it is durably
    landed as Parquet under the landing folder, which the dbt models read as part of raw.events.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    try:
        config = CollectorConfig.from_env(
            port=port,
            host=host,
            landing_dir=landing_dir.expanduser().resolve() if landing_dir else None,
        )
        collector = Collector(config)
        collector.bind()
    except (ConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so it cannot run on this thread.
        threading.Thread(target=collector.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"Collecting at {collector.url} (landing: {config.landing_dir})", err=False)
    frozen = threading.Event()
    freeze_periodically(frozen)  # no full-heap GC pauses in front of acknowledgements
    try:
        collector.serve_forever()
    finally:
        frozen.set()
        collector.stop()
        click.echo(f"Stopped; {collector.writer.files_written} files landed.")
