"""Subcommands of `headwater`, one module per concern."""
