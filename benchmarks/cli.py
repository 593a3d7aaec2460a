"""gem-bench: our runtime vs the PyTorch reference, and the decode roofline.

    gem-bench latency --bundle B --checkpoint CKPT --ecg FILE.hea [--runs 5] [--warmup 1] [--new-tokens 128]
                      [--quant q4_k_m] [--threads 2] [--out DIR] [--gpu]
    gem-bench make-7b --layers L --out DIR           random gem-7b-shape checkpoint + bundle, L LLM layers
    gem-bench extrapolate A/results.json B/results.json --to 32 --out DIR
    gem-bench make-gguf-7b --tokenizer tokenizer.model --out F.gguf   random 32-layer Q4_K_M GGUF (~4 GB)
    gem-bench roofline --gguf F [--threads 2] [--out DIR]
    gem-bench soak [--bundle B] [--requests 300] [--seconds 120]   gem-run serve, ordinary and hostile clients, bounded
    gem-bench soak-load --bundle B [--requests 1000] [--clients 4]   gem-run serve under load (statuses, RSS, latency)
    gem-bench followup --bundle B --out DIR          a follow-up's time to first token against the first request's
    gem-bench dicom --bundle B --out DIR             the DICOM listener: C-STORE received -> SR written
    gem-bench batch --bundle B --records N --out DIR  records/hour: local vs Ray vs batched decode, same outputs?
    gem-bench speculation --bundle B --records N --out DIR   decode tok/s: plain vs each draft length, same text?
    gem-bench delineation [--label NAME] [--md benchmarks/delineation.md]   LUDB cardiologists and cart files
    gem-bench peer --layers N --threads T --ecg FILE.hea --out DIR [--work CACHE_DIR]   llama.cpp's llama-mtmd-cli
                                                     beside ours (image tower only, and GEM), same machine and prompt

Every user mistake is one line on stderr and exit code 2.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import click

from gem_runtime.cli_errors import run_cli
from gem_runtime.manifest import QUANTS
from gem_runtime.trt_engine import cuda_device_present


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Benchmarks of gem-edge on this machine."""


@cli.command("soak")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("bundles/demo"),
              show_default=True)
@click.option("--requests", type=click.IntRange(1), default=300, show_default=True)
@click.option("--clients", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--seconds", type=click.FloatRange(1), default=120, show_default=True, help="stop sending after this")
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True, help="the server's model threads")
@click.option("--md", type=click.Path(dir_okay=False, path_type=Path), default=Path("benchmarks/soak.md"),
              show_default=True)
def soak_hostile(bundle, requests, clients, seconds, threads, md):
    """gem-run serve under a bounded mix of ordinary and hostile clients (issue 26); exit 1 on a 5xx or a wrong
    status."""
    from .soak import soak as run, write

    result = run(bundle, requests, clients, seconds, threads, log=lambda m: click.echo(m, err=True))
    write(result, md, f"gem-bench soak --bundle {bundle} --requests {requests} --clients {clients} "
                      f"--seconds {seconds:g} --threads {threads}")
    click.echo(md.read_text())
    if not result.ok:
        raise SystemExit(1)


@cli.command("soak-load")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--requests", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--clients", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(1, 2048), default=32, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True, help="the server's model threads")
@click.option("--state-mb", type=click.IntRange(0), default=64, show_default=True,
              help="the server's follow-up state budget (full early, so RSS growth after it is leakage)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks/results/soak"),
              show_default=True)
def soak(bundle, requests, clients, max_new_tokens, threads, state_mb, out):
    """gem-run serve under load: REQUESTS from CLIENTS (10% malformed, 10% follow-ups); statuses, RSS, latency."""
    from .serve_bench import soak as run, write

    result = run(bundle, requests, clients, max_new_tokens, threads=threads, state_mb=state_mb,
                 log=lambda m: click.echo(m, err=True))
    click.echo(json.dumps(dataclasses.asdict(result), indent=1))
    click.echo(f"wrote {write(result, out, 'soak')}")


@cli.command()
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--runs", type=click.IntRange(1), default=5, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def followup(bundle, runs, threads, out):
    """Time to first token of a follow-up question against the first request's, interleaved, one process."""
    from .serve_bench import followup as run, write

    result = run(bundle, runs, threads, log=lambda m: click.echo(m, err=True))
    click.echo(json.dumps(dataclasses.asdict(result), indent=1))
    click.echo(f"wrote {write(result, out, 'followup')}")


@cli.command("batch")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--records", type=click.IntRange(1), default=40, show_default=True)
@click.option("--new-tokens", type=click.IntRange(1, 2048), default=64, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def batch(bundle, records, new_tokens, threads, out):
    """Records/hour of gem-run batch: local vs Ray (2 workers) vs batched decode, same folder, same run."""
    import tempfile

    from .batch_bench import make_archive, run_engines, write

    with tempfile.TemporaryDirectory(prefix="gem-bench-batch-") as tmp:
        archive = make_archive(Path(tmp) / "in", records)
        runs = run_engines(bundle, archive, Path(tmp), new_tokens, threads, log=lambda m: click.echo(m, err=True))
    path = write(bundle, records, new_tokens, threads, runs, out)
    click.echo(path.read_text())
    click.echo(f"wrote {path}")


@cli.command("speculation")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--records", type=click.IntRange(1), default=20, show_default=True)
@click.option("--new-tokens", type=click.IntRange(1, 2048), default=128, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="a training corpus to draft from when the bundle has no n-gram table")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def speculation(bundle, records, new_tokens, threads, corpus, out):
    """Decode tokens/s: plain vs speculative per draft length, acceptance, text identity, the k-token cost curve."""
    import tempfile

    from .batch_bench import make_archive
    from .speculation import run, table_from_corpus, write

    table = table_from_corpus(bundle, corpus) if corpus else None
    with tempfile.TemporaryDirectory(prefix="gem-bench-spec-") as tmp:
        files = sorted(make_archive(Path(tmp) / "in", records).glob("*.hea"))
        runs, curve = run(bundle, files, new_tokens, threads, table, log=lambda m: click.echo(m, err=True))
    path = write(bundle, records, new_tokens, threads, runs, curve, out)
    click.echo(path.read_text())
    click.echo(f"wrote {path}")


@cli.command("speculation-llm")
@click.option("--gguf", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--tokenizer", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="the GGUF's SentencePiece model (gem-bench make-gguf-7b --tokenizer)")
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="a training corpus: the n-gram table and the prompts' report openings")
@click.option("--prompts", type=click.IntRange(1), default=2, show_default=True)
@click.option("--new-tokens", type=click.IntRange(1, 2048), default=64, show_default=True)
@click.option("--draft-lengths", default="0,1,2,3", show_default=True)
@click.option("--oracle-acceptance", type=click.FloatRange(0, 1), default=0.86, show_default=True,
              help="chance that each oracle draft token is right (the demo model's draft-1 acceptance)")
@click.option("--prefill-positions", type=click.IntRange(1, 4096), default=668, show_default=True,
              help="positions of the timed prefill (GEM's 758-position prompt after its 90 cached ids)")
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def speculation_llm(gguf, tokenizer, corpus, prompts, new_tokens, draft_lengths, oracle_acceptance,
                    prefill_positions, threads, out):
    """Speculation on a bare GGUF (the 32-layer gem-7b one): tok/s per draft length against the bandwidth bound."""
    from .speculation import run_llm, write

    try:
        lengths = tuple(sorted({0, *(int(k) for k in draft_lengths.split(","))}))
    except ValueError:
        raise click.BadParameter(f"{draft_lengths!r}: comma-separated integers", param_hint="--draft-lengths") from None
    runs, curve, bound = run_llm(gguf, tokenizer, corpus, prompts, new_tokens, threads, lengths, oracle_acceptance,
                                 prefill_positions, log=lambda m: click.echo(m, err=True))
    path = write(gguf, prompts, new_tokens, threads, runs, curve, out, bound)
    click.echo(path.read_text())
    click.echo(f"wrote {path}")


@cli.command("dicom")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--ecgs", type=click.IntRange(1), default=20, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def dicom(bundle, ecgs, threads, out):
    """The DICOM listener's latency, C-STORE received -> SR written (dcmtk's storescu sends; needs dcmtk)."""
    from .dicom_bench import dicom_latency, write

    result = dicom_latency(bundle, ecgs, threads=threads)
    click.echo(json.dumps(dataclasses.asdict(result), indent=1))
    click.echo(f"wrote {write(result, out)}")


def main(argv: list[str] | None = None):
    run_cli(cli, "gem-bench", argv)


@cli.command()
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="the checkpoint the bundle was exported from (the reference runs it)")
@click.option("--ecg", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="a WFDB .hea record (the reference reads it with wfdb.rdsamp, as GEM does)")
@click.option("--runs", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--warmup", type=click.IntRange(0, 100), default=1, show_default=True)
@click.option("--new-tokens", type=click.IntRange(1, 1024), default=128, show_default=True)
@click.option("--quant", type=click.Choice(QUANTS), default=None, help="default: the bundle's")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="default: all cores, at most 8")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-results"),
              show_default=True)
@click.option("--label", default="", help="title of the table and chart")
@click.option("--no-rss", is_flag=True, help="skip the two peak-RSS subprocesses")
@click.option("--gpu", is_flag=True, help="CUDA/TensorRT backends and the fp16 torch reference (needs a GPU)")
@click.option("--reference", type=click.Choice(["hf", "lean"]), default="hf", show_default=True,
              help="hf: GEM's path (HF CLIPVisionModel + LlamaForCausalLM.generate); lean: our torch model, own KV loop")
@click.option("--encoder-precision", type=click.Choice(["auto", "fp32", "int8"]), default="auto", show_default=True,
              help="our encoders' (auto: what gem-run tune chose here, else fp32)")
@click.option("--repack", type=click.Choice(["auto", "on", "off", "split"]), default="auto", show_default=True,
              help="ggml's weight repacking on our side (auto: what gem-run tune chose here, else on; split: the "
                   "prompt unrepacked, decoding on a repacked copy)")
def latency(bundle, checkpoint, ecg, runs, warmup, new_tokens, quant, threads, out, label, no_rss, gpu, reference,
            encoder_precision, repack):
    """Stage-by-stage latency, ours vs the PyTorch reference, interleaved on the same ECG."""
    from .latency import LatencyArgs, run_latency
    from .report import markdown, write_results

    if gpu and not cuda_device_present():
        click.echo("gem-bench: --gpu skipped: no CUDA GPU on this machine")
        return
    threads = threads or min(8, os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    a = LatencyArgs(bundle, checkpoint, ecg, runs=runs, warmup=warmup, new_tokens=new_tokens, quant=quant,
                    threads=threads, gpu=gpu, rss=not no_rss, label=label,
                    reference=reference, encoder_precision=encoder_precision, repack=repack)
    results = run_latency(a, log=lambda m: click.echo(m, err=True))
    paths = write_results(results, out)
    click.echo(markdown(results))
    click.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


@cli.command("make-7b")
@click.option("--layers", type=click.IntRange(1, 32), required=True, help="LLM depth (gem-7b has 32)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder holding (or to hold) the 32000-piece tokenizer.model; default OUT/tokenizer")
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def make_7b_cmd(layers, out, tokenizer_dir, threads, seed):
    """Random-weight gem-7b-shape checkpoint (OUT/checkpoint) and Q4_K_M bundle (OUT/bundle)."""
    from .gem7b import make_7b

    made = make_7b(layers, out, threads=threads, seed=seed, tokenizer_dir=tokenizer_dir,
                   log=lambda m: click.echo(m, err=True))
    click.echo(json.dumps({k: str(v) for k, v in made.items()}))


@cli.command()
@click.argument("runs", nargs=2, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "to_layers", type=click.IntRange(1, 1000), default=32, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def extrapolate(runs, to_layers, out):
    """Fit per-layer cost from two results.json of different depths; write the table at --to layers."""
    from .report import extrapolate as fit
    from .report import markdown, write_results

    a, b = (json.loads(Path(p).read_text()) for p in runs)
    results = fit(a, b, to_layers)
    write_results(results, out)
    click.echo(markdown(results))


@cli.command("make-gguf-7b")
@click.option("--tokenizer", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="a 32000-piece tokenizer.model (gem-bench make-7b writes one)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--quant", type=click.Choice(QUANTS), default="q4_k_m", show_default=True)
@click.option("--layers", type=click.IntRange(1, 32), default=32, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True)
def make_gguf_7b(tokenizer, out, quant, layers, threads):
    """A random gem-7b LLM GGUF written tensor by tensor (no torch model), then quantized."""
    from gem_train.config import GemConfig

    from .roofline import make_random_gguf

    config = GemConfig.from_name("gem-7b", num_hidden_layers=layers)
    path = make_random_gguf(config, tokenizer, out, quant, threads, log=lambda m: click.echo(m, err=True))
    click.echo(str(path))


@cli.command("roofline")
@click.option("--gguf", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="default: all cores, at most 8")
@click.option("--tokens", type=click.IntRange(1, 4096), default=32, show_default=True, help="decoded per rep")
@click.option("--reps", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option("--bw-mib", type=click.IntRange(16, 65536), default=None,
              help="bandwidth array size; default max(1 GiB, 4 x last-level cache)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="write roofline.json and roofline.md here")
def roofline_cmd(gguf, threads, tokens, reps, bw_mib, out):
    """Decode tok/s of a GGUF vs this machine's memory bandwidth / bytes read per token."""
    from .roofline import markdown, roofline

    threads = threads or min(8, os.cpu_count() or 1)
    r = roofline(gguf, threads, new_tokens=tokens, reps=reps, bw_mib=bw_mib)
    text = markdown(r)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "roofline.json").write_text(json.dumps(r, indent=2))
        (out / "roofline.md").write_text(text)
    click.echo(text)


@cli.command("delineation")
@click.option("--ludb", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="LUDB records (default: ../shared/data/real/ludb)")
@click.option("--real", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="the cart files (default: ../shared/data/real)")
@click.option("--label", default="current", show_default=True, help="this run's name (its JSON: OUT/LABEL.json)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("benchmarks/results/delineation"), show_default=True)
@click.option("--md", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the report (every OUT/*.json run side by side) here, e.g. benchmarks/delineation.md")
@click.option("--neurokit", is_flag=True, help="also measure neurokit2's DWT delineation (pip install neurokit2)")
def delineation_cmd(ludb, real, label, out, md, neurokit):
    """Delineation against LUDB's cardiologists (detection, boundaries, global intervals) and every cart file."""
    from . import delineation as d

    real = real or d.SHARED / "real"
    s = d.run(ludb or real / "ludb", real, label, out, neurokit=neurokit, log=lambda m: click.echo(m, err=True))
    d.print_summary(s, log=click.echo)
    if md is not None:
        d.write_markdown(out, md, ludb or real / "ludb", label)
        click.echo(f"wrote {md}")


@cli.command("footprint")
@click.option("--layers", type=click.IntRange(1, 32), default=32, show_default=True, help="LLM depth (7B has 32)")
@click.option("--types", default="q4_0,q4_k_m,iq4_nl,q5_k_m,q6_k,q8_0,f16", show_default=True,
              help="LLM types, in the order they are measured")
@click.option("--source", type=click.Path(exists=True, file_okay=False, path_type=Path), show_default=True,
              default=Path("work/peer/gem7b-L2/bundle"), help="a make-7b bundle whose layers the deep GGUF repeats")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("work/footprint"),
              show_default=True, help="cache: the deep bundle (about 45 GB with every type)")
@click.option("--quantize", type=click.Path(exists=True, dir_okay=False, path_type=Path), show_default=True,
              default=Path("work/peer/build/bin/llama-quantize"), help="llama.cpp's (gem-bench peer builds it)")
@click.option("--ecg", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--new-tokens", type=click.IntRange(2, 1024), default=32, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks/results/footprint"))
@click.option("--md", type=click.Path(dir_okay=False, path_type=Path), default=Path("benchmarks/footprint.md"))
def footprint(layers, types, source, work, quantize, ecg, new_tokens, out, md):
    """Per LLM type at GEM-7B shape: size, peak RSS, cold/warm load, TTFT and decode at 1 and 2 threads."""
    from .footprint import TYPES, run_command

    chosen = tuple(t.strip() for t in types.split(",") if t.strip())
    if unknown := [t for t in chosen if t not in TYPES] or ([] if chosen else ["(none given)"]):
        raise click.UsageError(f"unknown LLM type(s) {', '.join(unknown)}; choose from {', '.join(TYPES)}")
    click.echo(run_command(layers, chosen, source, work, quantize, ecg, new_tokens, out, md,
                           log=lambda m: click.echo(m, err=True)))


@cli.command("peer")
@click.option("--layers", type=click.IntRange(1, 32), default=2, show_default=True, help="LLM depth (7B has 32)")
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True, help="every side's")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("work/peer"),
              show_default=True, help="cache: the llama.cpp build, the GGUF and mmproj files, the bundle")
@click.option("--ecg", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="the record GEM reads; its page is the image both sides see")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="a GEM-7B-shape bundle (default: WORK/gem7b-L<N>/bundle, made by make-7b when missing)")
@click.option("--runs", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--warmup", type=click.IntRange(0, 100), default=1, show_default=True)
@click.option("--new-tokens", type=click.IntRange(2, 1024), default=128, show_default=True)
@click.option("--sides", default="theirs_f16,ours_image,theirs_q8_0,ours_gem", show_default=True,
              help="which sides, in each round's order; also ours_image_int8, ours_gem_int8 (int8 encoders)")
@click.option("--encoder-precision", type=click.Choice(["auto", "fp32", "int8"]), default="auto", show_default=True,
              help="our encoders' (auto: what gem-run tune chose here, else fp32)")
@click.option("--repack", type=click.Choice(["auto", "on", "off", "split"]), default="auto", show_default=True,
              help="ggml's weight repacking on our sides (auto: what gem-run tune chose here, else on; split: the "
                   "prompt unrepacked, decoding on a repacked copy)")
@click.option("--no-rss", is_flag=True, help="skip the fresh processes that measure our peak RSS")
def peer(layers, threads, out, work, ecg, bundle, runs, warmup, new_tokens, sides, encoder_precision, repack, no_rss):
    """llama.cpp's own multimodal CLI (built here from the llama.cpp our llama-cpp-python pins) beside ours:
    image encode, prefill, TTFT, decode, end to end, peak RSS; interleaved, medians and p90."""
    from .peer import ALL_SIDES, PeerUsageError, run_command

    chosen = tuple(s.strip() for s in sides.split(",") if s.strip())
    if not chosen or set(chosen) - set(ALL_SIDES):
        raise click.BadParameter(f"{sides!r}: a comma-separated subset of {', '.join(ALL_SIDES)}",
                                 param_hint="--sides")
    try:
        click.echo(run_command(layers, threads, out, work, ecg, bundle, runs, warmup, new_tokens, chosen,
                               encoder_precision, repack, no_rss, log=lambda m: click.echo(m, err=True)))
    except PeerUsageError as e:
        raise click.UsageError(str(e)) from None


if __name__ == "__main__":
    main()
