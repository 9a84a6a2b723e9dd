"""The ``bridge`` command: one module per command group."""

from bridge.cli.main import cli, main

__all__ = ["cli", "main"]
