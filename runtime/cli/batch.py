"""gem-run batch: every ECG under a folder, one result each, resumable (gem_runtime.batch).

    gem-run batch IN_DIR --out OUT_DIR [--engine local|ray] [--workers N] [--address ADDR] [--bundle DIR]
                  [--quant TYPE] [--threads N] [--max-new-tokens N] [--decode-batch N] [--save-images]
                  [--revise-rhythm]

Writes OUT_DIR/<relative path>.json per record (as `gem-run --json`, plus its "batch" key) and
OUT_DIR/errors.jsonl (one line per refused file); a rerun skips what is done. Exit codes:

    0    every file was interpreted, now or by an earlier run
    3    some files were refused (each in errors.jsonl with its reason); the others are done
    2    a usage error, a bad bundle, a results folder that cannot be written: one line on stderr
    130  stopped by SIGTERM or Ctrl-C after the record in hand (ray: the records in flight are abandoned):
         rerun the same command to resume

--engine local (the default) keeps one warm model in this process; --engine ray (the scale extra) runs the
records on a Ray actor pool, --workers warm models, on a local Ray or the cluster at --address (see
gem_runtime.batch.ray_engine). Outputs, summary and exit codes are the same.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..cli_errors import INTERRUPTED
from ..errors import GemEdgeError
from ..manifest import QUANTS
from .config_option import audit_option

REFUSED = 3            # exit code: some files were refused (errors.jsonl)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("in_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="results folder: <relative path>.json per record, errors.jsonl")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one warm model in this process; ray: a pool of them (the scale extra)")
@click.option("--workers", type=click.IntRange(1, 4096), default=None,
              help="ray only: warm models (actors); default: one per GPU, else the CPUs / --threads")
@click.option("--address", default=None,
              help="ray only: the cluster to join (HOST:PORT, auto); default: a local Ray on this machine")
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None,
              help="bundle folder; default: the committed demo bundle")
@click.option("--quant", type=click.Choice(QUANTS), default=None, help="LLM file; default: the bundle's default")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="default: all cores, at most 8")
@click.option("--max-new-tokens", type=click.IntRange(1, 2048), default=256, show_default=True)
@click.option("--decode-batch", type=click.IntRange(1, 64), default=1, show_default=True,
              help="records decoded together in one llama.cpp context (faster where a decode of several tokens "
                   "costs less than as many decodes; the text may differ from one at a time: see the README)")
@click.option("--save-images", is_flag=True,
              help="write OUT_DIR/<relative path>.png, the image the model saw, and its median beats")
@click.option("--max-bytes", type=click.IntRange(1), default=200 * 2**20, show_default=True,
              help="refuse ECG files (with their signal files) larger than this")
@click.option("--revise-rhythm", is_flag=True,
              help="as gem-run --revise-rhythm; with --decode-batch, a record whose rhythm statement is contradicted "
                   "is revised from its own sequence once the batch is decoded (part of the results' key: a rerun "
                   "with it redoes all)")
@audit_option()
def batch(in_dir, out_dir, engine, workers, address, bundle_dir, quant, threads, max_new_tokens, decode_batch,
          save_images, max_bytes, audit_file, revise_rhythm):
    """Interpret every ECG file under IN_DIR into OUT_DIR/<relative path>.json (as gem-run --json)."""
    from tqdm import tqdm

    from ..batch import ERRORS_FILE, LocalOptions, run_local, walk_records
    from ..batch.store import check_writable
    from ..bundle import Bundle, default_bundle

    for flag, value in (("--workers", workers), ("--address", address)):
        if value is not None and engine != "ray":
            raise click.UsageError(f"{flag} applies to --engine ray only")
    if engine == "ray":
        from ..batch.ray_engine import require_ray

        require_ray()                                     # a missing extra is one line before anything is written
    if out_dir.resolve() == in_dir.resolve():
        raise click.UsageError("--out must not be IN_DIR itself: give a folder of its own for the results")
    Bundle.open(bundle_dir or default_bundle())           # a bad bundle is one line before anything is written
    os.umask(0o077)                                       # results are patient data: 0600 files in 0700 folders
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GemEdgeError(f"{out_dir}: cannot create the results folder ({exc.strerror or exc})") from None
    check_writable(out_dir)                               # a read-only folder is one line before the model loads
    walk = walk_records(in_dir, out_dir)
    if bundle_dir is None:
        click.echo(f"gem-run: using the demo bundle {default_bundle()} (pass --bundle for another)", err=True)
    options = LocalOptions(bundle=bundle_dir, quant=quant, threads=threads, max_new_tokens=max_new_tokens,
                           save_images=save_images, max_bytes=max_bytes, decode_batch=decode_batch,
                           audit_log=audit_file, revise_rhythm=revise_rhythm)
    counts = {"done": 0, "skipped": 0, "refused": 0}
    with tqdm(total=walk.count, unit="rec", desc="gem-run batch", file=sys.stderr, dynamic_ncols=True) as bar:
        def on_record(rel: str, outcome: str, reason: str | None) -> None:
            counts[outcome] += 1
            if reason is not None:
                bar.write(f"refused {rel}: {reason}", file=sys.stderr)
            bar.set_postfix(counts, refresh=False)
            bar.update(1)

        if engine == "ray":
            from ..batch.ray_engine import RayOptions, run_ray

            summary = run_ray(walk, out_dir, options, RayOptions(workers=workers, address=address), on_record)
        else:
            summary = run_local(walk, out_dir, options, on_record)
    click.echo(summary_line(summary, walk.count, out_dir / ERRORS_FILE))
    code = INTERRUPTED if summary.interrupted else REFUSED if summary.refused else 0
    if code:
        sys.exit(code)      # not ctx.exit: run_cli's click.main(standalone_mode=False) would return the code


def summary_line(s, total: int, errors_file: Path) -> str:
    """One line: what this run did, its rate, and where the refusals are."""
    parts = [f"{s.done} done", f"{s.skipped} skipped", f"{s.refused} refused"
             + (f" (listed in {errors_file})" if s.refused else "")]
    left = total - s.done - s.skipped - s.refused
    if left:
        parts.append(f"{left} not reached")
    if s.hidden:
        parts.append(f"{s.hidden} hidden {'file or folder' if s.hidden == 1 else 'files or folders'} not read")
    head = f"gem-run batch: interrupted by {s.interrupted}: " if s.interrupted else "gem-run batch: "
    tail = "; rerun the same command to resume" if s.interrupted else ""
    return f"{head}{', '.join(parts)} in {s.seconds:.1f} s, {s.records_per_hour:.0f} records/hour{tail}"
