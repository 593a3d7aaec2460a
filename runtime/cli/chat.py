"""gem-run chat: interpret one ECG, then answer follow-up questions about it in the terminal.

    gem-run chat ECG_FILE [--bundle B] [--max-new-tokens N]
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import ConfigError, ContextOverflowError, one_line
from ..manifest import QUANTS
from .format import grounding_brackets


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("ecg_file", type=click.Path(path_type=Path))
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None,
              help="bundle folder; default: the committed demo bundle")
@click.option("--quant", type=click.Choice(QUANTS), default=None)
@click.option("--threads", type=click.IntRange(1, 256), default=None)
@click.option("--fs", type=click.FloatRange(min=0, min_open=True), default=None, help="sampling rate (for .npy)")
@click.option("--max-new-tokens", type=click.IntRange(1, 2048), default=256, show_default=True)
def chat(ecg_file, bundle_dir, quant, threads, fs, max_new_tokens):
    """Interpret ECG_FILE, then answer follow-up questions about it (an empty line or Ctrl-D ends)."""
    from ..interpreter import Interpreter
    from ..readers import read_ecg

    record = read_ecg(ecg_file, fs=fs)                       # input errors before any model is loaded
    write = lambda s: (sys.stdout.write(s), sys.stdout.flush())   # noqa: E731
    with Interpreter.load(bundle_dir, quant=quant, threads=threads) as gem:
        result = gem.interpret(record, max_new_tokens=max_new_tokens, stream=write)
        click.echo("")
        for line in grounding_brackets(result.grounding, result.diagnoses):
            click.echo(line)
        while True:
            try:
                question = input("\nyou> ").strip()
            except EOFError:
                break
            if not question:
                break
            sys.stdout.write("gem> ")
            try:
                answer = gem.ask(result, question, max_new_tokens=max_new_tokens, stream=write)
            except (ContextOverflowError, ConfigError) as e:   # one line, and the chat goes on (it ended there)
                click.echo("")
                click.echo(f"gem-run chat: {one_line(str(e))}", err=True)
                continue
            click.echo("")
            for line in grounding_brackets(answer.grounding, answer.diagnoses):
                click.echo(line)
