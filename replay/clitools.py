"""Shared command-line plumbing: one-line errors with their exit codes, and the synthetic notice."""

from __future__ import annotations

import sys

import click

from .errors import ToolError


def main_wrapper(group: click.Group, argv=None) -> None:
    """Run a click group; a ToolError becomes one line on stderr and its exit code (bad input 2,
    endpoint failure 3; see replay.errors)."""
    try:
        group.main(args=argv, standalone_mode=False)
    except ToolError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


def announce(store) -> None:
    """Every command that reads a synthetic store says so, once, on stderr."""
    if store.synthetic:
        click.echo(f"note: store {store.name!r} is SYNTHETIC (simulated, not collected from real models)", err=True)


def open_announced(path):
    from .store import open_store

    store = open_store(path)
    announce(store)
    return store
