"""gem-run: GEM on this machine, offline. One module per command; the text they print is in `format`.

    gem-run ECG_FILE ...             interpret one ECG (the default command, `gem-run run`)
    gem-run measure | chat | serve | batch | dicom-listen | tune ...

Every user mistake is one line on stderr and exit code 2 (gem_runtime.cli_errors); nothing is half-written.
"""
from __future__ import annotations

import sys

import click

from ..cli_errors import run_cli
from .audit import audit
from .batch import batch
from .chat import chat
from .dicom_listen import dicom_listen
from .measure import measure
from .run import run
from .serve import serve
from .tune import tune
from .verify_bundle import verify_bundle

DEFAULT_COMMAND = "run"


class _GemRun(click.Group):
    """A group whose first argument, when it names no command, is the ECG file of the default command, so that
    `gem-run ECG_FILE --json` keeps working beside `gem-run measure ECG_FILE`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


@click.group(cls=_GemRun, context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Interpret ECGs with GEM offline: `gem-run ECG_FILE` (WFDB, DICOM, Philips / GE MUSE / GE CardioSoft /
    HL7 aECG XML, SCP-ECG, EDF, .npy), or one of the commands below."""


for _command in (run, measure, chat, serve, batch, dicom_listen, tune, verify_bundle, audit):
    cli.add_command(_command, _command.name.replace("_", "-"))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in cli.commands:       # errors name the subcommand's usage, as before: "gem-run measure"
        run_cli(cli.commands[argv[0]], f"gem-run {argv[0]}", argv[1:], tool="gem-run")
    elif argv and argv[0] in ("-h", "--help"):
        run_cli(cli, "gem-run", argv)
    else:           # no arguments: run's one-line usage error ("Missing argument 'ECG_FILE'"), as before
        run_cli(run, "gem-run", argv)
