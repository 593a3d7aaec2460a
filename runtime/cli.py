"""gem-run: interpret an ECG file offline from a bundle.

    gem-run ECG_FILE [--image PNG] [--bundle DIR] [--quant q4_k_m|q8_0|f16] [--backend auto|tensorrt|cuda|cpu]
            [--json] [--save-image OUT.png] [--max-new-tokens N]

Every user mistake is one line on stderr and exit code 2; nothing is half-written.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from .errors import GemEdgeError


def _fail(msg: str, code: int = 2):
    click.echo(f"gem-run: error: {msg}", err=True)
    sys.exit(code)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("ecg_file", type=click.Path(path_type=Path))
@click.option("--image", type=click.Path(path_type=Path), default=None,
              help="a 12-lead paper image; default: render one from the signal")
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None,
              help="bundle folder; default: the committed demo bundle")
@click.option("--quant", type=click.Choice(["q4_k_m", "q8_0", "f16"]), default=None,
              help="LLM file; default: the bundle's default")
@click.option("--backend", type=click.Choice(["auto", "tensorrt", "cuda", "cpu"]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="default: all cores, at most 8")
@click.option("--fs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="sampling rate in Hz (needed for .npy)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of streamed text")
@click.option("--save-image", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the image the model saw (PNG), and its median beats with fiducials beside it")
@click.option("--max-new-tokens", type=click.IntRange(1, 2048), default=256, show_default=True)
@click.option("--max-bytes", type=click.IntRange(1), default=200 * 2**20, show_default=True,
              help="refuse ECG files (with their signal files) larger than this")
def run(ecg_file, image, bundle_dir, quant, backend, threads, fs, as_json, save_image, max_new_tokens, max_bytes):
    """Interpret ECG_FILE (WFDB .hea, DICOM waveform, or .npy [12, N] with --fs) with GEM."""
    from .bundle import default_bundle
    from .interpreter import Interpreter
    from .readers import read_ecg

    if save_image is not None and not save_image.parent.is_dir():
        raise GemEdgeError(f"{save_image}: folder {save_image.parent} does not exist")
    t0 = time.perf_counter()
    record = read_ecg(ecg_file, fs=fs, max_bytes=max_bytes)  # input errors before any model is loaded
    read_ms = (time.perf_counter() - t0) * 1000
    if bundle_dir is None:
        click.echo(f"gem-run: using the demo bundle {default_bundle()} (pass --bundle for another)", err=True)
    with Interpreter.load(bundle_dir, quant=quant, backend=backend, threads=threads) as gem:
        stream = None if as_json else (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        result = gem.interpret(record, image=image, max_new_tokens=max_new_tokens, stream=stream,
                               save_image=save_image)
    result.timings_ms["read"] = round(read_ms, 2)         # the file was read here, before the models loaded
    result.timings_ms["total"] = round(result.timings_ms["total"] + read_ms, 2)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "load_ms": round(gem.load_ms, 1)}))
        return
    click.echo("\n")
    for w in result.warnings:
        click.echo(f"warning: {w}")
    click.echo(result.measurement_table())
    click.echo(result.timing_table())
    click.echo(f"  {'load':15s} {gem.load_ms:9.1f} ms  (once per process)")


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    command = run
    if argv and argv[0] == "measure":
        from .measure_cli import measure as command
        argv = argv[1:]
    try:
        command.main(args=argv, prog_name="gem-run" + (" measure" if command is not run else ""),
                     standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        _fail("aborted", 130)
    except click.UsageError as e:
        _fail(e.format_message().replace("\n", " "))
    except GemEdgeError as e:
        _fail(str(e).replace("\n", " "))
    except KeyboardInterrupt:
        _fail("interrupted", 130)


if __name__ == "__main__":
    main()
