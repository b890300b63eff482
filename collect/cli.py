"""The `collect` command: build stores (import other formats, simulate synthetic ones)."""

from __future__ import annotations

import click

from replay.clitools import main_wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Build stores of sampled outputs that `replay` and `search` read.

    \b
    collect import autotts DIR --out traces/aime24   convert the AutoTTS release format
    collect simulate SPEC --out traces/sim-2wiki     a synthetic multi-stage store
    """


@cli.group("import")
def import_():
    """Convert another release's format into a store."""


@import_.command("autotts")
@click.argument("src", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(), help="Store folder to write (replaced atomically).")
@click.option("--name", default=None, help="Store name (default: the folder name).")
@click.option("--benchmark", default="aime24", show_default=True, help="Prefix of the question ids.")
@click.option("--train-fraction", default=0.5, show_default=True, help="Share of questions in the train split.")
@click.option("--split-seed", default=0, show_default=True)
def import_autotts_cmd(src, out, name, benchmark, train_fraction, split_seed):
    """Import an AutoTTS replay environment: a folder of <model>.json files."""
    from .importers.autotts import import_autotts

    path = import_autotts(src, out, name=name, benchmark=benchmark, train_fraction=train_fraction,
                          split_seed=split_seed)
    click.echo(f"wrote {path}")


def main(argv=None):
    main_wrapper(cli, argv)


if __name__ == "__main__":
    main()
