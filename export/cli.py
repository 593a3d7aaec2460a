"""gem-export: checkpoint -> verified edge bundle; verify and inspect bundles; TensorRT engines."""
from __future__ import annotations

import json
from pathlib import Path

import click

from gem_runtime.cli_errors import run_cli
from gem_runtime.manifest import QUANTIZED


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Build, verify and inspect gem-edge bundles."""


def main(argv: list[str] | None = None):
    run_cli(cli, "gem-export", argv)


def _quants(ctx, param, value: str) -> tuple[str, ...]:
    qs = tuple(q.strip().lower() for q in value.split(",") if q.strip())
    bad = [q for q in qs if q not in QUANTIZED]
    if bad:
        raise click.BadParameter(f"unknown {', '.join(bad)}; choose from {', '.join(QUANTIZED)}")
    return tuple(dict.fromkeys(qs))


@cli.command()
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--quant", default="q8_0,q4_k_m", show_default=True, callback=_quants,
              help=f"comma-separated llama.cpp types, of {', '.join(QUANTIZED)} (f16 is always written)")
@click.option("--trt", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--ecg-tower-pt", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="ECG-CoCa checkpoint (cpt_wfep_epoch_20.pt) when the tower is not in the safetensors")
@click.option("--clip-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="openai/clip-vit-large-patch14-336 folder when CLIP is not in the checkpoint")
@click.option("--report-only-quant", is_flag=True,
              help="report quantized parity without failing on it (untrained models have near-tied logits)")
@click.option("--int8/--no-int8", default=True, show_default=True,
              help="also write int8 CPU encoders (gated by cosine vs PyTorch; one that fails is never used)")
@click.option("--ngram-corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="the training corpus (records.json folder): its reports become speculative decoding's drafts")
def build(checkpoint, out, quant, trt, threads, ecg_tower_pt, clip_dir, report_only_quant, int8, ngram_corpus):
    """Export encoders to ONNX (+TensorRT), the LLM to GGUF (+quantized), and check parity against PyTorch."""
    from .build import BuildOptions, build_bundle

    opts = BuildOptions(quants=quant, trt=trt, threads=threads, quant_gate=not report_only_quant, int8=int8,
                        ngram_corpus=ngram_corpus, log=lambda m: click.echo(m, err=True))
    build_bundle(checkpoint, out, opts, ecg_tower_pt=ecg_tower_pt, clip_dir=clip_dir)


@cli.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="the checkpoint the bundle was built from (the gate compares with its PyTorch encoders)")
@click.option("--min-cosine", type=click.FloatRange(0, 1), default=None,
              help="the int8 gate (default: the build's, 0.998)")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
def int8(bundle_dir, checkpoint, min_cosine, threads):
    """Add int8 CPU encoders to a bundle, each with its parity against PyTorch (one that fails is never used)."""
    from gem_runtime.bundle import Bundle
    from gem_train.checkpoint import load_checkpoint

    from .build import INT8_MIN_COSINE, BuildOptions, add_int8

    Bundle.open(bundle_dir).verify_all()
    opts = BuildOptions(threads=threads, int8_min_cosine=INT8_MIN_COSINE if min_cosine is None else min_cosine,
                        log=lambda m: click.echo(m, err=True))
    m = add_int8(bundle_dir, load_checkpoint(checkpoint), opts)
    click.echo(f"bundle {bundle_dir} ({m.bundle_id}): int8 encoders "
               + ", ".join(f"{n} {'passed' if m.parity.encoders[n + '.int8'].ok else 'FAILED (not used)'}"
                           for n in m.encoders))


@cli.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="the checkpoint the bundle was built from (PyTorch writes the reference reports)")
@click.option("--n", "n", type=click.IntRange(1), default=50, show_default=True)
@click.option("--seed", type=int, default=777, show_default=True, help="the simulator seed of the fresh ECGs")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
def findings(bundle_dir, checkpoint, n, seed, threads):
    """Compare each LLM type's reports with PyTorch's by findings (conditions, numbers) on N fresh ECGs; the
    default type becomes the smallest whose findings match on >= 98%."""
    from gem_runtime.bundle import Bundle

    from .findings import findings_parity

    Bundle.open(bundle_dir).verify_all()
    m = findings_parity(checkpoint, bundle_dir, n, seed, threads, log=lambda msg: click.echo(msg, err=True))
    for q, p in m.parity.llm.items():
        f = p.findings
        click.echo(f"  {q}: findings match {f.findings_match}/{f.n}, tokens identical {f.tokens_identical}/{f.n}")
    click.echo(f"bundle {bundle_dir}: default LLM type {m.default_quant}")


@cli.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--type", "quants", multiple=True, help="LLM type(s) to compare the knobs with (default: every type "
              "whose own gate passed); repeatable")
@click.option("--knob", "only", multiple=True, help="only this knob (int8_encoders, repack_off, flash_attn_off, "
              "draft_len_K); repeatable; default: every one the bundle can take")
@click.option("--n", "n", type=click.IntRange(1), default=50, show_default=True)
@click.option("--seed", type=int, default=778, show_default=True, help="the simulator seed of the fresh ECGs")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
def knobs(bundle_dir, quants, only, n, seed, threads):
    """Compare each speed knob's reports (int8 encoders, repacking off, flash attention off, each draft length) with
    the same LLM type's plain ones by findings on N fresh ECGs; `gem-run tune` takes a knob only at >= 98%."""
    from gem_runtime.bundle import Bundle

    from .knobs import knob_choices, knob_fidelity

    b = Bundle.open(bundle_dir)
    b.verify_all()
    unknown = [q for q in quants if q not in b.manifest.llm]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: not in the bundle (it has {', '.join(b.manifest.llm)})",
                                 param_hint="--type")
    unknown = [k for k in only if k not in knob_choices(b)]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: not a knob this bundle can take (it can: "
                                 f"{', '.join(knob_choices(b))})", param_hint="--knob")
    m = knob_fidelity(bundle_dir, n, seed, threads, list(quants) or None, list(only) or None,
                      log=lambda msg: click.echo(msg, err=True))
    for q, by_knob in m.parity.knobs.items():
        for knob, f in by_knob.items():
            passed = "" if m.parity.knob_problem(q, knob) is None else "  (not taken)"
            click.echo(f"  {q} {knob}: findings as plain's {f.findings_match}/{f.n}{passed}")


@cli.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="the training corpus (a folder with records.json)")
def ngrams(bundle_dir, corpus):
    """Add speculative decoding's draft table (n-grams of the corpus's reports) to a bundle."""
    from gem_runtime.bundle import Bundle

    from .build import add_ngrams

    Bundle.open(bundle_dir).verify_all()
    m = add_ngrams(bundle_dir, corpus, log=lambda msg: click.echo(msg, err=True))
    click.echo(f"bundle {bundle_dir} ({m.bundle_id}): {m.ngram_file}")


@cli.command()
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), required=True)
def verify(bundle_dir):
    """Re-hash every file of a bundle against its manifest."""
    from gem_runtime.bundle import Bundle

    b = Bundle.open(bundle_dir)
    names = b.verify_all()
    click.echo(f"ok: {len(names)} files match {bundle_dir}/manifest.json (bundle {b.bundle_id})")


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def keygen(out):
    """Make an Ed25519 signing key pair: OUT/gem-edge-signing.key (0600) and OUT/gem-edge-signing.pub."""
    from .signing import keygen as make_keys

    private, public, kid = make_keys(out)
    click.echo(f"key {kid}: private {private} (keep it off the carts), public {public} (give it to the carts)")


@cli.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--key", "key_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="the private key (gem-export keygen)")
def sign(bundle_dir, key_path):
    """Re-hash every file of a bundle, then sign its manifest (which pins every file's sha256): manifest.sig."""
    from .signing import sign_bundle

    kid, n = sign_bundle(bundle_dir, key_path)
    click.echo(f"signed {bundle_dir}/manifest.sig with key {kid} ({n} files verified)")


@cli.command()
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def inspect(bundle_dir, as_json):
    """Print what a bundle holds: model, files, parity."""
    from gem_runtime.bundle import Bundle
    from gem_runtime.manifest import Parity

    b = Bundle.open(bundle_dir)
    m = b.manifest
    if as_json:
        click.echo(json.dumps(m.to_dict(), indent=2))
        return
    click.echo(f"bundle {b.bundle_id}  format v{m.format_version}  model {m.name}  "
               f"LLM {m.num_layers}x{m.model['hidden_size']} vocab {m.model['vocab_size']}  "
               f"default {b.default_quant()}")
    click.echo(f"rows: {m.prompt.ecg_rows} ECG + {m.prompt.image_rows} image")
    for name, e in sorted(m.files.items()):
        click.echo(f"  {name:32s} {e.bytes:>12,d} B  {e.sha256[:16]}")
    parity = m.parity or Parity()
    for name, r in parity.encoders.items():
        click.echo(f"  parity {name}: cosine {r.cosine or 0:.7f} max|diff| {r.max_abs_diff or 0:.2e}"
                   f"{'' if r.ok else f'  FAILED: {r.problem}'}")
    for q, r in parity.llm.items():
        extra = f"greedy {r.agree}/{r.greedy_tokens}" if q == "f16" else f"top-1 {r.top1_agreement or 0:.2f}"
        f = r.findings
        findings = "" if f is None else (f", findings as PyTorch's on {f.findings_match}/{f.n} fresh ECGs "
                                         f"(tokens identical {f.tokens_identical}/{f.n})")
        click.echo(f"  parity llm {q}: logits cosine {r.cosine:.6f}, {extra}{findings}")
    for q, by_knob in parity.knobs.items():
        cells = [f"{knob} {f.findings_match}/{f.n}{'' if parity.knob_problem(q, knob) is None else ' (not taken)'}"
                 for knob, f in by_knob.items()]
        click.echo(f"  knobs with {q}, findings as plain decoding's: {', '.join(cells)}")
    if not parity.knobs:
        click.echo("  knobs: findings not compared (gem-export knobs): gem-run tune takes none")
    click.echo(f"  speculation drafts: {m.ngram_file or 'none (gem-export ngrams adds a table)'}")
    click.echo(f"  tensorrt: {(m.tensorrt or {}).get('status')}")


@cli.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--max-batch", type=click.IntRange(1), default=4, show_default=True)
def trt(bundle_dir, max_batch):
    """Build fp16 TensorRT engines for this GPU from the bundle's ONNX encoders."""
    from gem_runtime.bundle import Bundle

    from .build import add_engines
    from .trt import build_engines

    Bundle.open(bundle_dir).verify_all()              # engines are built from verified graphs only
    res = build_engines(bundle_dir, "on", log=lambda m: click.echo(m, err=True), max_batch=max_batch)
    add_engines(bundle_dir, res)
    click.echo(json.dumps(res))


if __name__ == "__main__":
    main()
