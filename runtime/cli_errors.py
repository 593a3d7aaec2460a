"""One error policy for every gem-edge command (gem-run, gem-export, gem-train, gem-bench).

A user's mistake (a GemEdgeError, or a click usage error) is one line on stderr, `PROG: error: ...`, exit 2.
Ctrl-C is one line, exit 130. Anything else is a bug in gem-edge: it keeps its traceback (exit 1).
"""
from __future__ import annotations

import sys
from typing import NoReturn

import click

from .errors import GemEdgeError, one_line

USER_ERROR = 2
INTERRUPTED = 130


def fail(prog: str, message: str, code: int = USER_ERROR) -> NoReturn:
    click.echo(f"{prog}: error: {one_line(message)}", err=True)
    sys.exit(code)


def run_cli(command: click.Command, prog: str, argv: list[str] | None = None, *, tool: str | None = None) -> None:
    """Run a click command or group under the policy above. Returns normally on success. `tool` names the
    program in error lines when `prog` is a subcommand's usage name ("gem-run measure" -> "gem-run")."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = prog
    prog = tool or prog
    try:
        command.main(args=argv, prog_name=name, standalone_mode=False)
    except click.exceptions.Exit as e:
        if e.exit_code:
            sys.exit(e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:   # a bare group: its help, as click prints it
        click.echo(e.format_message(), err=True)
        sys.exit(USER_ERROR)
    except click.Abort:
        fail(prog, "aborted", INTERRUPTED)
    except click.ClickException as e:          # usage errors, bad parameters, unreadable click.File
        fail(prog, e.format_message())
    except GemEdgeError as e:
        fail(prog, str(e))
    except KeyboardInterrupt:
        fail(prog, "interrupted", INTERRUPTED)
