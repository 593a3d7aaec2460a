"""gem-run tune: time each encoder precision and LLM type on this machine and keep the fastest that passed
its gate (<bundle>.tune.json, read by gem_runtime.tuning)."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import GemEdgeError
from .format import tuning_lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None,
              help="bundle folder; default: the committed demo bundle")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="default: all cores, at most 8")
@click.option("--runs", type=click.IntRange(1, 50), default=3, show_default=True)
def tune(bundle_dir, threads, runs):
    """Time each encoder precision and LLM type on this machine; gem-run then uses the fastest that passed its
    parity gate (written to <bundle>.tune.json)."""
    from ..bundle import Bundle, default_bundle
    from ..tune import measure
    from ..tuning import default_threads, write_tuning

    bundle = Bundle.open(bundle_dir or default_bundle())
    threads = threads or default_threads()
    tuning = measure(bundle, threads, runs, log=lambda m: click.echo(m, err=True))
    for line in tuning_lines(tuning):
        click.echo(line)
    try:
        click.echo(f"wrote {write_tuning(bundle, tuning)}")
    except OSError as exc:
        raise GemEdgeError(f"{bundle.root}: cannot write the tuning beside it ({exc.strerror or exc})") from None
