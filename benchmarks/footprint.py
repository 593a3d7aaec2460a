"""`gem-bench footprint`: what GEM-7B needs on a cart, per LLM type (issue 28).

For each type: the GGUF's size on disk, the peak RSS of a process that loads the whole bundle as `gem-run serve`
does (`Interpreter.load`: both ONNX encoders, the GGUF, the delineator) and answers one ECG, its load time cold
(the bundle's files dropped from the page cache with posix_fadvise(DONTNEED), which needs no root and leaves
other files' pages alone) and warm (a second fresh process, the files cached), and its TTFT and decode rate at 1
and 2 threads.

The 32-layer GGUFs are timing-only: random weights at LLaMA-2-7B shape. The f16 one is written from a 2-layer
GEM-7B-shape bundle (`gem-bench make-7b`, whose torch model at 32 layers would need 28 GB) by repeating its two
layers' tensors, then `llama-quantize` (built by `gem-bench peer` from the llama.cpp our llama-cpp-python pins)
makes each type from it. Every layer's cost is the same whatever its numbers, so time and memory are a real
7B's; text is not.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

TYPES = ("q4_0", "q4_k_m", "iq4_nl", "q5_k_m", "q6_k", "q8_0", "f16")
QUANTIZE_NAME = {"q4_0": "Q4_0", "q4_k_m": "Q4_K_M", "iq4_nl": "IQ4_NL", "q5_k_m": "Q5_K_M", "q6_k": "Q6_K",
                 "q8_0": "Q8_0"}
CART_GIB = (2, 4, 8, 12, 16, 24, 32, 48, 64)       # memory sizes carts and small PCs ship with
OS_HEADROOM_GIB = 1.0                               # left for the OS and the cart's own software
TIME_BIN = "/usr/bin/time"


# --- building the files -------------------------------------------------------------------------------------------

def expand_gguf(src: Path, dst: Path, layers: int, log=print) -> Path:
    """A copy of the GGUF `src` with `layers` blocks, block i's tensors those of src's block i % n."""
    import gguf

    if dst.exists():
        return dst
    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"]
    arch = bytes(arch.parts[arch.data[0]]).decode()
    n_src = int(reader.fields[f"{arch}.block_count"].parts[-1][0])
    tmp = dst.with_suffix(".part")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == f"{arch}.block_count":
            writer.add_uint32(name, layers)
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            value = [bytes(field.parts[i]).decode("utf-8", "replace") if sub == gguf.GGUFValueType.STRING
                     else field.parts[i].tolist()[0] for i in field.data]
            writer.add_key_value(name, value, vtype, sub_type=sub)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_key_value(name, bytes(field.parts[field.data[0]]).decode("utf-8", "replace"), vtype)
        else:
            writer.add_key_value(name, field.parts[field.data[0]].tolist()[0], vtype)
    blocks: dict[int, list] = {}
    for t in reader.tensors:
        m = re.match(r"blk\.(\d+)\.(.+)", t.name)
        if m:
            blocks.setdefault(int(m.group(1)), []).append((m.group(2), t))
        else:
            writer.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    for i in range(layers):
        for suffix, t in blocks[i % n_src]:
            writer.add_tensor(f"blk.{i}.{suffix}", t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()
    tmp.rename(dst)
    log(f"[footprint] {dst.name}: {layers} blocks from {n_src} ({dst.stat().st_size / 2**30:.2f} GiB)")
    return dst


def make_bundle(src_bundle: Path, out: Path, layers: int, types: tuple[str, ...], quantize: Path, threads: int,
                log=print) -> Path:
    """out: src_bundle's encoders and tokenizer (hard links), a `layers`-block GGUF per type, its manifest."""
    from gem_runtime.bundle import Bundle, write_manifest
    from gem_runtime.manifest import MANIFEST_FILE, Manifest

    src = Manifest.from_dict(json.loads((src_bundle / MANIFEST_FILE).read_text()))
    out.mkdir(parents=True, exist_ok=True)
    for name in src.files:
        if not name.startswith("llm-") and not (out / name).exists():
            os.link(src_bundle / name, out / name)
    f16 = expand_gguf(src_bundle / src.llm["f16"], out / "llm-f16.gguf", layers, log)
    llm = {}
    for t in types:
        path = out / f"llm-{t}.gguf"
        if t != "f16" and not path.exists():
            t0 = time.time()
            subprocess.run([str(quantize), str(f16), str(path.with_suffix(".part")), QUANTIZE_NAME[t], str(threads)],
                           check=True, capture_output=True)
            path.with_suffix(".part").rename(path)
            log(f"[footprint] {path.name}: {path.stat().st_size / 2**30:.2f} GiB ({time.time() - t0:.0f} s)")
        llm[t] = path.name
    old = (Manifest.from_dict(json.loads((out / MANIFEST_FILE).read_text()))
           if (out / MANIFEST_FILE).exists() else None)
    if old is None or not set(llm) <= set(old.llm):        # a new cache, or one this run adds types to
        from gem_runtime.bundle import file_entry

        known = old.files if old else {}                      # entries already hashed (GiBs each) are kept
        llm = {**(old.llm if old else {}), **llm}
        files = {k: v for k, v in src.files.items() if not k.startswith("llm-")}
        files.update({name: known.get(name) or file_entry(out / name) for name in llm.values()})
        model = dict(src.model, num_hidden_layers=layers)
        note = f"random weights at GEM-7B shape, {layers} LLM layers: timing and memory only"
        write_manifest(out, replace(src, model=model, llm=llm, files=files, note=note,
                                    default_quant="q4_k_m" if "q4_k_m" in llm else types[0]))
    Bundle.open(out)                        # refuses a bundle the runtime would refuse
    return out


# --- measuring --------------------------------------------------------------------------------------------------

def evict(paths: list[Path]) -> str:
    """Drop these files' pages from the page cache (clean pages of files no process maps), and nothing else's."""
    os.sync()                                   # dirty pages are not dropped
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return "posix_fadvise(DONTNEED) on every bundle file"


@dataclass
class ProbeResult:
    quant: str
    threads: int
    cold: bool
    load_s: float
    ttft_ms: float
    decode_tok_s: float
    new_tokens: int
    repack: bool = True
    peak_rss_mib: float | None = None
    anon_mib: float | None = None      # RssAnon after the request: heap, KV cache, repacked weights, ONNX arenas
    file_mib: float | None = None      # RssFile after the request: mapped GGUF and ONNX pages (reclaimable if unread)
    evicted_by: str = ""


def probe(bundle: Path, quant: str, threads: int, ecg: Path, new_tokens: int, cold: bool,
          repack: bool | None = None) -> ProbeResult:
    """One fresh process under /usr/bin/time -v: Interpreter.load, one interpret."""
    how = ""
    if cold:
        how = evict([p for p in bundle.iterdir() if p.is_file()])
    spec = json.dumps({"bundle": str(bundle), "quant": quant, "threads": threads, "ecg": str(ecg),
                       "new_tokens": new_tokens, "repack": repack})
    p = subprocess.run([TIME_BIN, "-v", sys.executable, "-m", "benchmarks.footprint", spec], capture_output=True,
                       text=True, cwd=Path(__file__).resolve().parents[1],
                       env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"footprint probe {quant} x{threads} failed: {p.stderr.strip().splitlines()[-5:]}")
    r = ProbeResult(**json.loads(lines[-1]), cold=cold, evicted_by=how)
    r.peak_rss_mib = int(m.group(1)) / 1024 if m else None
    return r


def _probe_main(raw: str) -> None:
    from gem_runtime.interpreter import Interpreter

    a = json.loads(raw)
    t0 = time.perf_counter()
    gem = Interpreter.load(a["bundle"], quant=a["quant"], threads=a["threads"], draft_len=0, encoder_precision="fp32",
                           repack=a.get("repack"))
    load_s = time.perf_counter() - t0
    r = gem.interpret(Path(a["ecg"]), max_new_tokens=a["new_tokens"], ignore_eos=True)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    kib = {k: int(status[k].split()[0]) for k in ("RssAnon", "RssFile") if k in status}
    gem.close()
    print(json.dumps({"quant": a["quant"], "threads": a["threads"], "load_s": load_s, "ttft_ms": r.timings.ttft_ms,
                      "decode_tok_s": (r.new_tokens - 1) / (r.timings["decode"] / 1000), "new_tokens": r.new_tokens,
                      "anon_mib": kib.get("RssAnon", 0) / 1024 or None,
                      "file_mib": kib.get("RssFile", 0) / 1024 or None,
                      "repack": gem.plan.repack}))


def smallest_cart_gib(peak_rss_mib: float) -> int | None:
    need = peak_rss_mib / 1024 + OS_HEADROOM_GIB
    return next((g for g in CART_GIB if g >= need), None)


def run_footprint(bundle: Path, types: tuple[str, ...], ecg: Path, new_tokens: int, out: Path, log=print,
                  repack: bool | None = None) -> dict:
    """repack None: as gem-run loads the bundle (a tune file's choice, else llama.cpp's weight repacking on)."""
    from gem_runtime.bundle import Bundle

    from .machine import machine_info

    b = Bundle.open(bundle)
    rows: list[dict] = []
    result = {"label": "footprint of GEM-7B per LLM type", "machine": machine_info(), "bundle": str(bundle),
              "layers": b.manifest.model.get("num_hidden_layers"), "ecg": str(ecg), "new_tokens": new_tokens,
              "os_headroom_gib": OS_HEADROOM_GIB, "repack": repack, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    for t in types:
        size = (bundle / b.manifest.llm[t]).stat().st_size
        cold = probe(bundle, t, 2, ecg, new_tokens, cold=True, repack=repack)
        log(f"[footprint] {t}: cold load {cold.load_s:.1f} s ({cold.evicted_by}), 2 threads TTFT "
            f"{cold.ttft_ms / 1000:.1f} s, decode {cold.decode_tok_s:.2f} tok/s, peak RSS {cold.peak_rss_mib:.0f} MiB "
            f"(anonymous {cold.anon_mib or 0:.0f}, file {cold.file_mib or 0:.0f})")
        warm = probe(bundle, t, 1, ecg, new_tokens, cold=False, repack=repack)
        log(f"[footprint] {t}: warm load {warm.load_s:.1f} s, 1 thread TTFT {warm.ttft_ms / 1000:.1f} s, decode "
            f"{warm.decode_tok_s:.2f} tok/s, peak RSS {warm.peak_rss_mib:.0f} MiB")
        rss = max(cold.peak_rss_mib or 0, warm.peak_rss_mib or 0)
        rows.append({"type": t, "gguf_bytes": size, "cold": asdict(cold), "warm_t1": asdict(warm),
                     "peak_rss_mib": rss, "smallest_cart_gib": smallest_cart_gib(rss)})
        (out / "results.json").write_text(json.dumps(result, indent=1))     # after every type: resumable by hand
    return result


def run_command(layers: int, types: tuple[str, ...], source: Path, work: Path, quantize: Path, ecg: Path,
                new_tokens: int, out: Path, md: Path, log=print) -> str:
    """`gem-bench footprint`: build (or reuse) the deep bundle in `work`, measure every type, write `md`."""
    command = (f"gem-bench footprint --layers {layers} --types {','.join(types)} --ecg {ecg} --new-tokens "
               f"{new_tokens} --out {out} --md {md}")
    bundle = make_bundle(source, work / f"gem7b-L{layers}", layers, types, quantize, threads=2, log=log)
    result = run_footprint(bundle, types, ecg, new_tokens, out, log=log)
    md.write_text(markdown(result, command))
    return f"wrote {md} and {out / 'results.json'}"


def markdown(result: dict, command: str) -> str:
    from .machine import machine_line

    gib = 2**30
    lines = ["# GEM-7B's footprint on a cart, per LLM type", "",
             f"`{command}` (benchmarks/footprint.py). {machine_line(result['machine'])}.", "",
             f"GEM-7B shape, {result['layers']} LLM layers, random weights (timing and memory only; see the module "
             "docstring for how the 32-layer files are made). Each row: one fresh process per column group, as "
             "`gem-run serve` loads a bundle (`Interpreter.load`: fp32 ONNX encoders, the GGUF, the delineator) and "
             f"answers one ECG (`{Path(result['ecg']).name}`, {result['new_tokens']} new tokens, plain decoding). "
             "Cold: the page cache dropped first (" + (result["rows"][0]["cold"]["evicted_by"] if result["rows"]
                                                       else "-") + "); warm: a second process, the files cached. "
             f"Smallest cart: the first of {', '.join(str(g) for g in CART_GIB)} GiB that holds the peak RSS plus "
             f"{result['os_headroom_gib']:.0f} GiB for the OS. That is the safe figure; the split after it says "
             "where the memory is. Anonymous memory (the KV cache, ONNX Runtime's copy of the encoders' weights and "
             "its arenas, llama.cpp's repacked weights) must fit; file-mapped pages are the GGUF and ONNX files as "
             "mapped, which the kernel can drop and read again. Where llama.cpp repacks a type's weights (its "
             "anonymous memory grows by about the GGUF's size), the mapped GGUF is not read after loading, so such a "
             "type runs in about its anonymous memory plus the OS.", "",
             "| type | GGUF | peak RSS | anonymous / file-mapped after the request | smallest cart | cold load | "
             "warm load | TTFT 2 threads | TTFT 1 thread | decode 2 threads | decode 1 thread |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        c, w = r["cold"], r["warm_t1"]
        split = (f"{c['anon_mib'] / 1024:.2f} / {c['file_mib'] / 1024:.2f} GiB" if c.get("anon_mib") and
                 c.get("file_mib") else "-")
        lines.append(f"| {r['type']} | {r['gguf_bytes'] / gib:.2f} GiB | {r['peak_rss_mib'] / 1024:.2f} GiB | "
                     f"{split} | {r['smallest_cart_gib'] or '-'} GiB | {c['load_s']:.1f} s | {w['load_s']:.1f} s | "
                     f"{c['ttft_ms'] / 1000:.1f} s | {w['ttft_ms'] / 1000:.1f} s | {c['decode_tok_s']:.2f} tok/s | "
                     f"{w['decode_tok_s']:.2f} tok/s |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    _probe_main(sys.argv[1])
