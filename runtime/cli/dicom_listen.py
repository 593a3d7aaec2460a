"""gem-run dicom-listen: the DICOM Storage SCP for ECG waveforms, with SR and HL7 results (the hospital extra).

    gem-run dicom-listen --port P --out DIR [--ae-title GEMEDGE] [--allow-ae AE ...] [--forward HOST:PORT:AE]
                         [--hl7 HOST:PORT] [--bundle B] [--host 127.0.0.1] [--max-associations N]
                         [--max-associations-per-host N] [--max-bytes N] [--message-timeout S] [--min-free-mb MB]
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import click

from ..errors import GemEdgeError
from ..manifest import QUANTS
from ..supervision import Watchdog, configure_logging, notify
from .bind import check_port, writable_folder
from .config_option import audit_option, config_option
from .serve import LOCAL_HOSTS

log = logging.getLogger("gem_runtime.hospital")

_INSTALL = "gem-run dicom-listen needs the hospital extra: pip install 'gem-edge[hospital]' (pynetdicom, highdicom, hl7apy)"


def _peer(text: str, parts: int, what: str):
    from ..hospital.options import Peer

    fields = text.rsplit(":", parts - 1)
    if len(fields) != parts or not fields[1].isdigit() or not 0 < int(fields[1]) < 65536:
        raise click.BadParameter(f"{text!r} is not {what}")
    return Peer(fields[0], int(fields[1]), *(fields[2:] if parts == 3 else []))


def _listen_defaults(cfg) -> dict:
    m, d = cfg.model, cfg.dicom
    return {"bundle_dir": m.bundle, "quant": m.quant, "threads": m.threads, "max_new_tokens": m.max_new_tokens,
            "revise_rhythm": m.revise_rhythm,
            "port": d.port, "out": d.out, "host": d.host, "ae_title": d.ae_title, "allow_ae": d.allow_ae or None,
            "max_associations": d.max_associations, "retries": d.retries, "backoff_s": d.backoff_s,
            "max_bytes": d.max_bytes, "message_timeout_s": d.message_timeout_s, "min_free_mb": d.min_free_mb,
            "max_associations_per_host": d.max_associations_per_host,
            "forward": None if d.forward is None else f"{d.forward.host}:{d.forward.port}:{d.forward.ae_title}",
            "hl7": None if d.hl7 is None else f"{d.hl7.host}:{d.hl7.port}"}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@config_option("dicom", _listen_defaults)
@audit_option()
@click.option("--port", type=click.IntRange(1, 65535), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="where each ECG and its reports are kept: OUT/<SOPInstanceUID>/")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind; others need --allow-ae")
@click.option("--ae-title", default="GEMEDGE", show_default=True)
@click.option("--allow-ae", multiple=True, help="a calling AE title to accept (repeat); default: any")
@click.option("--forward", default=None, metavar="HOST:PORT:AE", help="send each SR on by C-STORE")
@click.option("--hl7", default=None, metavar="HOST:PORT", help="send each ORU^R01 over MLLP")
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None)
@click.option("--threads", type=click.IntRange(1, 256), default=None)
@click.option("--quant", type=click.Choice(QUANTS), default=None, help="LLM file; default: tune's choice, else the bundle's")
@click.option("--retries", type=click.IntRange(1, 100), default=5, show_default=True, help="tries per delivery")
@click.option("--backoff", "backoff_s", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="seconds before the second try of a delivery, doubling after")
@click.option("--max-new-tokens", type=click.IntRange(1, 2048), default=256, show_default=True)
@click.option("--log-json", is_flag=True, envvar="GEM_LOG_JSON",
              help="log one JSON object per event on stdout (journald) instead of lines on stderr")
@click.option("--max-associations", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="associations open at once; more are refused, each with a log line")
@click.option("--max-associations-per-host", type=click.IntRange(1, 1000), default=4, show_default=True,
              help="connections one peer host may hold at once; more are shut as they open, each with a log line")
@click.option("--max-bytes", type=click.IntRange(1), default=200 * 2**20, show_default=True,
              help="largest DICOM message (an ECG's dataset); a peer sending more is aborted while it sends")
@click.option("--message-timeout", "message_timeout_s", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="seconds a DICOM message may take to arrive from its first PDU (and an "
                                      "association may stay idle); past it the association is aborted")
@click.option("--min-free-mb", type=click.IntRange(0), default=512, show_default=True,
              help="disk space kept free under --out for the reports of what is stored: an ECG that would leave "
                   "less is refused (status 0xA700, out of resources)")
@click.option("--revise-rhythm", is_flag=True,
              help="revise contradicted rhythm statements; the SR and the HL7 carry the model's own text beside")
def dicom_listen(audit_file, port, out, host, ae_title, allow_ae, forward, hl7, bundle_dir, threads, quant, retries,
                 backoff_s, max_new_tokens, log_json, max_associations, max_associations_per_host, max_bytes,
                 message_timeout_s, min_free_mb, revise_rhythm):
    """Receive ECG waveforms by DICOM C-STORE; interpret each and write result.json, an SR and an HL7 ORU."""
    if host not in LOCAL_HOSTS and not allow_ae:
        raise GemEdgeError(f"--host {host} would accept any caller: give --allow-ae too (or keep 127.0.0.1)")
    if len(ae_title) > 16 or not ae_title.strip():
        raise GemEdgeError(f"--ae-title {ae_title!r}: an AE title is 1-16 characters")
    try:
        from ..hospital.listener import EcgListener, ListenerOptions
    except ImportError:
        raise GemEdgeError(_INSTALL) from None
    from ..interpreter import Interpreter

    check_port(host, port)                                # a port in use or an --out that cannot be written:
    writable_folder(out, "--out")                         # one line each, before the model loads
    options = ListenerOptions(out=out, port=port, host=host, ae_title=ae_title, allow_ae=tuple(allow_ae),
                              forward=_peer(forward, 3, "HOST:PORT:AE") if forward else None,
                              hl7=_peer(hl7, 2, "HOST:PORT") if hl7 else None, max_new_tokens=max_new_tokens,
                              max_associations=max_associations, retries=retries, backoff_s=backoff_s,
                              max_bytes=max_bytes, message_timeout_s=message_timeout_s, min_free_mb=min_free_mb,
                              max_associations_per_host=max_associations_per_host,
                              audit_log=audit_file, revise_rhythm=revise_rhythm)
    os.umask(0o077)                                       # patient data: 0600 files in 0700 folders
    configure_logging("gem-run dicom-listen", log_json)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Interpreter.load(bundle_dir, threads=threads, quant=quant) as gem:
        listener = EcgListener(options, gem)
        listener.start()
        log.info("%s", f"{ae_title} on {host}:{port}, storing into {out}")
        notify("READY=1")
        watchdog = Watchdog(lambda: listener.alive)
        watchdog.start()
        stop.wait()
        notify("STOPPING=1")
        watchdog.stop()
        log.info("stopping (finishing what is stored)")
        listener.stop()
    s = listener.stats
    log.info("%s", f"stored {s.stored}, refused {s.refused}, rejected associations {s.rejected}, aborted {s.aborted}, "
                   f"interpreted {s.interpreted}, failed {s.failed}"
                   + "".join(f"; {name}: delivered {n}, failed tries {f}" for name, (n, f) in
                             listener.deliveries.items()))
