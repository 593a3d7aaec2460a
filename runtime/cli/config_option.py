"""`--config FILE` for the daemons: one TOML file (gem_runtime.config) gives every setting a default, and any flag
given on the command line still wins. The file's trusted keys apply as $GEM_TRUSTED_KEYS does, so the bundle is
checked before any native loader opens it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import click

from ..audit import AUDIT_LOG_ENV
from ..signing import TRUSTED_KEYS_ENV


def config_option(section: str, defaults: Callable) -> Callable:
    """The eager --config option of a command whose settings come from `section` of the file: `defaults(cfg)`
    maps the loaded DeployConfig to the command's parameter names."""

    def load(ctx: click.Context, param, value: Path | None):
        if value is None:
            return value
        from ..config import DeployConfigError, load_config

        cfg = load_config(value)
        if getattr(cfg, section) is None:
            raise DeployConfigError(f"{value}: has no [{section}] section (gem-edge.toml names it)")
        if cfg.model.trusted_keys is not None:
            os.environ[TRUSTED_KEYS_ENV] = str(cfg.model.trusted_keys)
        if cfg.audit is not None and not os.environ.get(AUDIT_LOG_ENV):
            os.environ[AUDIT_LOG_ENV] = str(cfg.audit.log)
        given = {key: v for key, v in defaults(cfg).items() if v is not None}
        ctx.default_map = {**(ctx.default_map or {}), **given}
        return value

    return click.option("--config", type=click.Path(dir_okay=False, path_type=Path), is_eager=True,
                        expose_value=False, callback=load, metavar="FILE",
                        help="a gem-edge.toml: every setting's default (flags still win); trusted keys, audit log")


def audit_option() -> Callable:
    return click.option("--audit", "audit_file", type=click.Path(dir_okay=False, path_type=Path), envvar=AUDIT_LOG_ENV,
                        default=None, help="append one hash-chained line per interpretation here "
                                           "(gem-run audit verify FILE checks it)")


def token_file_option() -> Callable:
    def read(ctx, param, value):
        if value is None:
            return value
        from ..config import read_token

        ctx.default_map = {**(ctx.default_map or {}), "token": read_token(value)}
        return value

    return click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), is_eager=True,
                        expose_value=False, callback=read, metavar="FILE",
                        help="read the bearer token from this file (mode 0600): never put a secret in argv")
