"""gem-run audit verify FILE: check an audit trail's hash chain (gem_runtime.audit).

    gem-run audit verify /var/lib/gem-edge/audit.jsonl
    ok: 1423 lines, chain intact, head 9f2c...      (exit 0; keep the head elsewhere: a chain cannot show lines
                                                     cut off its end, a head kept elsewhere can)
    gem-run: error: audit.jsonl: line 812: seq 813, expected 812: a line removed, added or moved   (exit 2)
"""
from __future__ import annotations

from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def audit():
    """The audit trail: one hash-chained JSON line per interpretation."""


@audit.command()
@click.argument("log_file", type=click.Path(path_type=Path))
@click.option("--head", default=None, help="the head hash recorded earlier: the log must still contain it")
def verify(log_file, head):
    """Check every line's chain to the one before; the first bad line is named (exit 2)."""
    from ..audit import AuditError, verify_log

    n, last, heads = verify_log(log_file, keep_heads=head is not None)
    if head is not None and head not in heads:
        raise AuditError(f"{log_file}: head {head[:16]}... is not in the log: lines cut off its end, or another log")
    click.echo(f"ok: {n} lines, chain intact, head {last}")
