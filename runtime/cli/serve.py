"""gem-run serve: the warm local service (gem_runtime.serve, docs/serve-api.md).

    gem-run serve [--bundle B] [--host 127.0.0.1] [--port 8717] [--queue N] [--token T] [--timeout S]
                  [--max-bytes N] [--read-timeout S] [--max-connections-per-host N] [--shutdown-timeout S]
                  [--allow-host NAME] [--allow-origin O]
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from ..errors import GemEdgeError
from ..manifest import QUANTS
from ..supervision import Watchdog, configure_logging, notify
from .bind import check_port
from .config_option import audit_option, config_option, token_file_option

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_SERVE_INSTALL = "gem-run serve needs the serve extra: pip install 'gem-edge[serve]' (starlette, uvicorn, ...)"


def _serve_defaults(cfg) -> dict:
    m, s = cfg.model, cfg.serve
    return {"bundle_dir": m.bundle, "quant": m.quant, "threads": m.threads, "revise_rhythm": m.revise_rhythm,
            "host": s.host, "port": s.port,
            "queue_limit": s.queue, "token": s.token, "timeout_s": s.timeout_s, "max_bytes": s.max_bytes,
            "state_mb": s.state_mb, "read_timeout_s": s.read_timeout_s, "allow_hosts": s.allow_hosts or None,
            "max_connections_per_host": s.max_connections_per_host,
            "allow_origins": s.allow_origins or None}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@config_option("serve", _serve_defaults)
@token_file_option()
@audit_option()
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None,
              help="bundle folder; default: the committed demo bundle")
@click.option("--quant", type=click.Choice(QUANTS), default=None, help="LLM file; default: the bundle's default")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="default: all cores, at most 8")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to bind; anything but this machine needs --token")
@click.option("--port", type=click.IntRange(1, 65535), default=8717, show_default=True)
@click.option("--queue", "queue_limit", type=click.IntRange(0, 10_000), default=8, show_default=True,
              help="requests that may wait while one runs; more get 429")
@click.option("--token", default=None,
              help="require 'Authorization: Bearer TOKEN' on every /v1 call and /metrics (prefer --token-file)")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="seconds a request may take, queueing included; past it generation stops and it gets 504")
@click.option("--max-bytes", type=click.IntRange(1), default=200 * 2**20, show_default=True,
              help="largest upload (all files of one request)")
@click.option("--state-mb", type=click.IntRange(0), default=512, show_default=True,
              help="memory for the follow-up states of earlier ECGs (least recently used evicted first)")
@click.option("--read-timeout", "read_timeout_s", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="seconds a client may take to send a request's head (from connecting or its last "
                                      "answer) and again its body; past it 408")
@click.option("--max-connections-per-host", type=click.IntRange(0), default=64, show_default=True,
              help="connections one client address may hold at once; more are closed as they open (0: no cap; "
                   "raise it behind a reverse proxy, which makes every client one address)")
@click.option("--shutdown-timeout", "shutdown_timeout_s", type=click.FloatRange(min=0), default=30.0,
              show_default=True, help="on SIGTERM, seconds to let requests in flight finish before they are cut")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="another Host name to answer to besides the bound address (repeat); others get 421")
@click.option("--log-json", is_flag=True, envvar="GEM_LOG_JSON",
              help="log one JSON object per event on stdout (journald) instead of lines on stderr")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
              help="a browser origin (https://emr.example.org) allowed to post from another site (repeat)")
@click.option("--revise-rhythm", is_flag=True,
              help="revise contradicted rhythm statements unless a request says revise_rhythm=false")
def serve(audit_file, bundle_dir, quant, threads, host, port, queue_limit, token, timeout_s, max_bytes, state_mb,
          read_timeout_s, max_connections_per_host, shutdown_timeout_s, allow_hosts, log_json, allow_origins,
          revise_rhythm):
    """Serve GEM over HTTP: one warm model, a bounded queue, a viewer page at / (docs/serve-api.md)."""
    if host not in LOCAL_HOSTS and not token:
        raise GemEdgeError(f"--host {host} would let other machines in: give --token too (or keep 127.0.0.1)")
    check_port(host, port)                                # a port in use is one line before the model loads
    configure_logging("gem-run serve", log_json)
    os.umask(0o077)                                         # anything written for a request is this user's only
    try:
        import uvicorn

        from ..serve import ServeOptions, build_app
    except ImportError:
        raise GemEdgeError(_SERVE_INSTALL) from None
    from ..bundle import Bundle, default_bundle

    Bundle.open(bundle_dir or default_bundle())            # a bad bundle is one line before anything binds
    if audit_file is not None:
        from ..audit import AuditLog

        AuditLog(audit_file).close()                      # a log that cannot be written is one line, before binding
    options = ServeOptions(bundle=None if bundle_dir is None else str(bundle_dir), quant=quant, threads=threads,
                           queue=queue_limit, token=token, timeout_s=timeout_s, max_bytes=max_bytes,
                           state_mb=state_mb, host=host, allow_hosts=tuple(allow_hosts),
                           allow_origins=tuple(allow_origins), read_timeout_s=read_timeout_s,
                           audit_log=audit_file, revise_rhythm=revise_rhythm)
    click.echo(f"gem-run serve: http://{host}:{port}/ (bundle {bundle_dir or default_bundle()})", err=True)
    app = build_app(options)
    from ..serve.protocol import head_deadline_protocol

    # asyncio's loop, never uvloop where a deployment has it installed: the protocol layer (head deadline, lingering
    # close, per-address cap) is tested on asyncio's transports; the model, not the loop, bounds this service
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", loop="asyncio",
                            http=head_deadline_protocol(read_timeout_s, max_connections_per_host),
                            timeout_graceful_shutdown=shutdown_timeout_s,
                            **({"log_config": None} if log_json else {}))   # uvicorn's lines into our JSON
    _graceful_server(uvicorn)(config).run()


def _graceful_server(uvicorn):
    class GracefulServer(uvicorn.Server):
        """Ready (systemd's READY=1, then the watchdog fed while the model's thread lives) once the port answers."""

        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:
                notify("READY=1")
                self.watchdog = Watchdog(lambda: self.config.app.state.worker.alive)
                self.watchdog.start()

        async def shutdown(self, sockets=None):
            notify("STOPPING=1")
            if getattr(self, "watchdog", None) is not None:
                self.watchdog.stop()
            await super().shutdown(sockets=sockets)

        """On SIGTERM: stop accepting, cut the bodies still arriving (503), finish the requests in flight
        (at most --shutdown-timeout s), shut the model down and exit 0 (plain uvicorn re-raises the signal after
        its graceful shutdown, so the process would die of it)."""

        def handle_exit(self, sig, frame):
            self.config.app.state.stopping.set()
            if sig == signal.SIGTERM:
                self.should_exit = True
            else:
                super().handle_exit(sig, frame)

    return GracefulServer
