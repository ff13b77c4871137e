"""The console every subcommand prints through."""

from __future__ import annotations

import shutil

from rich.console import Console

# Captured or piped output gets 80 columns from rich, which cut sync, audience and journey names
# short in the summary tables; a terminal wider than this keeps its own width.
MIN_WIDTH = 140


def wide_console(min_width: int = MIN_WIDTH) -> Console:
    """A console at least `min_width` columns wide (the terminal's width when it is wider)."""
    return Console(width=max(min_width, shutil.get_terminal_size().columns), soft_wrap=False)
