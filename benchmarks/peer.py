"""`gem-bench peer`: our runtime beside llama.cpp's own multimodal stack (`llama-mtmd-cli`), one machine (issue 28).

Sides, run interleaved round by round (theirs f16, ours image-only, theirs q8_0, ours GEM, ...):
- theirs: `llama-mtmd-cli` at its defaults (context from the model, n_batch 2048, flash attention auto, its
  sampler) with the same threads, a LLaVA-1.5-7B-shaped Q4_K_M LLM and a CLIP ViT-L/14-336 `mmproj` in f16 or
  q8_0, one fresh process per run as the CLI runs (its load is not timed), on the rendered ECG page as a PNG;
- ours, image tower only: the same Q4_K_M GGUF file, our CLIP ONNX encoder from the GEM-7B-shape bundle (the
  precision `gem-run tune` chose here, else fp32), GEM's prompt without a cached prefix: like for like;
- ours as GEM runs: `Interpreter` on the bundle (ECG + image towers, 677 rows, measurements, the page drawn
  from the signal, the system-prompt KV reused as it is in a warm process);
- optional: ours_image_int8 / ours_gem_int8, the same with the bundle's int8 encoders, whatever tune chose.
Theirs' prefill is llama_perf's prompt window less its image encode (its preprocessing stays inside). Times are ms, from the request's start (theirs: after its model load and warmup, when it reads the image).
Decode tok/s = (new tokens - 1) / time from the first token to the last, on every side. Peak RSS: /usr/bin/time -v
of theirs' every run and of one fresh process per our side (load + one request).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .latency import repack_choice
from .peer_report import RUN_KEYS, summarize

SIDES = ("theirs_f16", "ours_image", "theirs_q8_0", "ours_gem")   # the order of one round (the default sides)
ALL_SIDES = SIDES + ("ours_image_int8", "ours_gem_int8")          # ours with int8 encoders, whatever tune chose
TIME_BIN = "/usr/bin/time"
MEDIA_MARKER = "<__media__>"          # mtmd_default_marker()


class PeerUsageError(Exception):
    """A command line whose parts do not fit together (a bundle of another depth than --layers)."""


@dataclass
class PeerArgs:
    layers: int
    threads: int
    out: Path
    work: Path
    ecg: Path
    runs: int = 5
    warmup: int = 1
    new_tokens: int = 128
    rss: bool = True
    sides: tuple[str, ...] = SIDES
    encoder_precision: str = "auto"   # ours: "auto" (gem-run tune's choice here, else fp32), "fp32" or "int8"
    repack: str = "auto"              # ours: ggml's weight repacking "auto" (tune's choice here, else on), "on", "off"
    command: str = ""


@dataclass
class Files:
    """What the sides run on (built or cached by `prepare`)."""
    bundle: Path                  # GEM-7B shape, N layers (gem-bench make-7b)
    llm: Path                     # LLaVA-1.5-7B shape, N layers, Q4_K_M (llama.cpp's llama-quantize)
    mmproj: dict                  # {"f16": Path, "q8_0": Path}
    image: Path                   # the ECG page, as both sides see it
    mtmd_cli: Path | None = None
    extra: dict = field(default_factory=dict)


# --- theirs -------------------------------------------------------------------------------------------------

def theirs_command(cli: Path, llm: Path, mmproj: Path, image: Path, threads: int, new_tokens: int) -> list[str]:
    """GEM's request through llama-mtmd-cli: the system prompt as its system message, the image then the question
    as the user turn (the GGUF's Vicuna template: `<system>\\n\\nUSER: <image>\\n<question>\\nASSISTANT:`).
    Its defaults but one: log verbosity 4, which prints its own timings (llama_perf, the image batch's decode)."""
    from gem_runtime import constants as K

    return [str(cli), "-m", str(llm), "--mmproj", str(mmproj), "--image", str(image), "-sys", K.SYSTEM_PROMPT,
            "-p", f"{MEDIA_MARKER}\n{K.DEFAULT_QUESTION}", "-n", str(new_tokens), "--ignore-eos",
            "-t", str(threads), "-lv", "4"]


def parse_theirs(stderr_lines: list[tuple[float, str]], stdout_chunks: list[tuple[float, bytes]]) -> dict:
    """Stage times of one llama-mtmd-cli run from its log (with the time each line arrived) and its streamed
    text. The request starts at `main: loading model:` (printed once model, mmproj and warmup are done)."""
    text = "".join(line for _, line in stderr_lines)
    start = next((t for t, line in stderr_lines if "main: loading model:" in line), None)
    if start is None or not stdout_chunks:
        raise RuntimeError("llama-mtmd-cli: no request start or no generated text in its output:\n" + text[-2000:])

    def num(pattern: str, group: int = 1) -> float:
        m = re.search(pattern, text)
        if not m:
            raise RuntimeError(f"llama-mtmd-cli output lacks {pattern!r}:\n{text[-2000:]}")
        return float(m.group(group))

    first, last = stdout_chunks[0][0], stdout_chunks[-1][0]
    eval_ms, eval_runs = num(r"\beval time =\s*([\d.]+) ms /\s*\d+ runs"), num(r"\beval time =.*?/\s*(\d+) runs")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    encode_ms = num(r"(?:mtmd batch encoding done|image slice encoded) in (\d+) ms")
    return {"image_encoder": encode_ms,
            "image_prefill": num(r"image decoded \(batch 1/1\) in (\d+) ms"),
            # llama_perf's prompt window runs from the first prompt decode to the first token's logits: the image
            # encode (and its preprocessing) happen inside it, unsynchronized; the encode is taken out
            "prefill": num(r"prompt eval time =\s*([\d.]+) ms") - encode_ms,
            "ttft": (first - start) * 1000, "decode": (last - first) * 1000, "total": (last - start) * 1000,
            # it decodes every token it samples, the last too: tokens after the first = eval runs - 1
            "decode_tok_s": (eval_runs - 1) / ((last - first) or 1e-9),
            "decode_tok_s_compute": eval_runs / (eval_ms / 1000) if eval_ms else 0.0,
            "prompt_positions": int(num(r"prompt eval time =.*?/\s*(\d+) tokens")),
            "decode_steps": int(eval_runs), "load_ms": num(r"load time =\s*([\d.]+) ms"),
            "peak_rss_mb": int(rss.group(1)) / 1024 if rss else None}


class Theirs:
    def __init__(self, cli: Path, llm: Path, mmproj: Path, image: Path, threads: int, new_tokens: int):
        self.cmd = theirs_command(cli, llm, mmproj, image, threads, new_tokens)
        if Path(TIME_BIN).exists():
            self.cmd = [TIME_BIN, "-v"] + self.cmd
        self.info = {"command": " ".join(self.cmd), "mmproj": str(mmproj), "gguf": str(llm)}

    def run(self) -> dict:
        p = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        out: list[tuple[float, bytes]] = []
        err: list[tuple[float, str]] = []

        def read_out():
            while chunk := os.read(p.stdout.fileno(), 65536):
                out.append((time.perf_counter(), chunk))

        def read_err():
            for line in iter(p.stderr.readline, b""):
                err.append((time.perf_counter(), line.decode(errors="replace")))

        readers = [threading.Thread(target=read_out), threading.Thread(target=read_err)]
        for r in readers:
            r.start()
        for r in readers:
            r.join()
        if p.wait() != 0:
            raise RuntimeError(f"llama-mtmd-cli exited with {p.returncode}:\n" + "".join(x for _, x in err)[-3000:])
        out = [(t, c) for t, c in out if c.strip()]
        stages = parse_theirs(err, out)
        self.info["prompt_positions"] = stages.pop("prompt_positions")
        self.info["text"] = b"".join(c for _, c in out).decode(errors="replace")[:200]
        return stages

    def close(self):
        pass


# --- ours ---------------------------------------------------------------------------------------------------

class OursImage:
    """Our runtime's parts on GEM's request with the image tower alone (no ECG rows, no measurements)."""

    def __init__(self, bundle: Path, llm: Path, image: Path, threads: int, new_tokens: int, precision: str = "auto",
                 repack: str = "auto"):
        from gem_runtime.encoders import OrtEncoder
        from gem_runtime.llm import LlamaLLM
        from gem_runtime.manifest import ENCODERS
        from gem_runtime.tuning import LoadPlan

        plan = LoadPlan.resolve(bundle, quant="q4_k_m", threads=threads, draft_len=0, encoder_precision=precision,
                                **repack_choice(repack))
        b = plan.bundle
        entry = b.manifest.encoders["image_encoder"]
        precision = plan.encoder_precision.get("image_encoder", "fp32")
        self.encoder = OrtEncoder(ENCODERS["image_encoder"], b.path(entry.int8_file if precision == "int8"
                                                                    else entry.file), "cpu", threads)
        self.llm = LlamaLLM(llm, n_ctx=plan.n_ctx, n_batch=512, n_threads=threads, flash_attn=plan.flash_attn,
                            repack=plan.repack, decode_repacked=plan.decode_repacked)
        self.image, self.image_size, self.new_tokens = image, b.manifest.preprocessing.image_size, new_tokens
        self.info = {"gguf": str(llm), "image_encoder": f"onnxruntime-cpu {precision}", "repack": plan.repack,
                     "decode_repacked": plan.decode_repacked, "flash_attn": plan.flash_attn, "n_ctx": plan.n_ctx}

    def run(self) -> dict:
        from gem_runtime import constants as K
        from gem_runtime.image import load_image, preprocess_image
        from gem_runtime.llm import LlmTimings, TextStream
        from gem_runtime.prompt import build_prompt, prompt_ids, split_prompt

        t, lt, pieces, first = {}, LlmTimings(), [], []
        t0 = time.perf_counter()
        pixels = preprocess_image(load_image(self.image), self.image_size)        # (3, S, S)
        t["read_preprocess"] = _ms(t0)
        t1 = time.perf_counter()
        rows = self.encoder.run(pixels[None])[0]                                  # (576, 4096)
        t["image_encoder"] = _ms(t1)
        t1 = time.perf_counter()
        before, after = split_prompt(prompt_ids(build_prompt(K.DEFAULT_QUESTION), self.llm.tokenize))
        pos = self.llm.prefill(before, rows, after, lt, reuse_prefix=False)
        t["prefill"] = _ms(t1)
        if self.llm.decode_repacked:
            t["hand_over"] = lt.hand_over_ms
        sink = TextStream(self.llm, pieces.append)

        def on_token(tok: int):
            if not first:
                first.append(time.perf_counter())
            sink(tok)

        out = self.llm.generate(pos, self.new_tokens, lt, ignore_eos=True, on_token=on_token)
        end = time.perf_counter()
        t.update(ttft=(first[0] - t0) * 1000, decode=(end - first[0]) * 1000, total=_ms(t0))
        t["decode_tok_s"] = (len(out) - 1) / ((end - first[0]) or 1e-9)
        self.info.update(prompt_positions=lt.prefill_positions, text="".join(pieces)[:200])
        return t

    def close(self):
        self.encoder.close()
        self.llm.close()


class OursGem:
    """gem_runtime.Interpreter as GEM runs: both towers, the measurements, the page drawn from the signal."""

    def __init__(self, bundle: Path, ecg: Path, threads: int, new_tokens: int, precision: str = "auto",
                 repack: str = "auto"):
        from gem_runtime.interpreter import Interpreter

        self.gem = Interpreter.load(bundle, quant="q4_k_m", threads=threads, draft_len=0,
                                    encoder_precision=precision, **repack_choice(repack))
        self.ecg, self.new_tokens = ecg, new_tokens
        self.info = {"gguf": str(self.gem.llm.path), "encoder_precision": dict(self.gem.plan.encoder_precision),
                     "repack": self.gem.plan.repack, "decode_repacked": self.gem.plan.decode_repacked}

    def run(self) -> dict:
        r = self.gem.interpret(self.ecg, max_new_tokens=self.new_tokens, ignore_eos=True)
        t = r.timings
        stages = {"read_preprocess": t["read"] + t["preprocess"], "measure": t["measure"], "render": t["render"],
                  "ecg_encoder": t["ecg_encoder"], "image_encoder": t["image_encoder"], "prefill": t["prefill"],
                  "ttft": t.ttft_ms, "decode": t["decode"], "total": t.total_ms,
                  "decode_tok_s": (r.new_tokens - 1) / (t["decode"] / 1000)}
        self.info.update(prompt_positions=r.prompt_positions, prefix_kv_reused=r.prefix_cached, text=r.text[:200],
                         backends=r.backends.to_dict())
        return stages

    def close(self):
        self.gem.close()


def open_side(side: str, f: Files, a: PeerArgs):
    if side.startswith("theirs_"):
        return Theirs(f.mtmd_cli, f.llm, f.mmproj[side.removeprefix("theirs_")], f.image, a.threads, a.new_tokens)
    base, precision = (side.removesuffix("_int8"), "int8") if side.endswith("_int8") else (side, a.encoder_precision)
    if base == "ours_image":
        return OursImage(f.bundle, f.llm, f.image, a.threads, a.new_tokens, precision, a.repack)
    if base == "ours_gem":
        return OursGem(f.bundle, a.ecg, a.threads, a.new_tokens, precision, a.repack)
    raise ValueError(f"unknown side {side!r}; choose from {', '.join(ALL_SIDES)}")


def run_command(layers: int, threads: int, out: Path, work: Path, ecg: Path, bundle: Path | None, runs: int,
                warmup: int, new_tokens: int, sides: tuple[str, ...], encoder_precision: str, repack: str,
                no_rss: bool, log=print) -> str:
    """`gem-bench peer`'s body: prepare the files, run the rounds, write results.json and results.md."""
    from .peer_build import prepare
    from .peer_report import markdown, write

    command = (f"gem-bench peer --layers {layers} --threads {threads} --ecg {ecg} --out {out} --work {work} "
               f"--runs {runs} --warmup {warmup} --new-tokens {new_tokens}"
               + (f" --bundle {bundle}" if bundle else "") + (f" --sides {','.join(sides)}" if sides != SIDES else "")
               + (f" --encoder-precision {encoder_precision}" if encoder_precision != "auto" else "")
               + (f" --repack {repack}" if repack != "auto" else "") + (" --no-rss" if no_rss else ""))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    files = prepare(layers, work, ecg, threads, bundle=bundle, build_cli=any(s.startswith("theirs_") for s in sides),
                    need_llm=any(not s.startswith("ours_gem") for s in sides), log=log)
    if any(s.startswith("ours_gem") for s in sides):
        from gem_runtime.bundle import Bundle

        depth = Bundle.open(files.bundle).manifest.num_layers
        if depth != layers:
            raise PeerUsageError(f"{files.bundle} has {depth} LLM layers, not {layers}: drop ours_gem from --sides")
    a = PeerArgs(layers, threads, out, work, ecg, runs=runs, warmup=warmup, new_tokens=new_tokens, rss=not no_rss,
                 sides=sides, encoder_precision=encoder_precision, repack=repack, command=command)
    results = run_peer(a, files, log=log)
    paths = write(results, out)
    return markdown(results) + f"\nwrote {', '.join(str(p) for p in paths.values())}"


# --- the benchmark ------------------------------------------------------------------------------------------

def run_peer(a: PeerArgs, f: Files, log=print) -> dict:
    """warmup + runs rounds, each side once per round in SIDES order; ours are loaded once and kept warm."""
    from .machine import machine_info

    info = machine_info()
    opened = {s: open_side(s, f, a) for s in a.sides}
    samples = {s: {k: [] for k in RUN_KEYS} for s in a.sides}
    try:
        for i in range(a.warmup + a.runs):
            kept = i >= a.warmup
            for s in a.sides:
                stages = opened[s].run()
                if kept:
                    for k, v in stages.items():
                        samples[s].setdefault(k, []).append(v)
                log(f"[{'run' if kept else 'warmup'} {i + 1}/{a.warmup + a.runs}] {s:11s} image "
                    f"{stages['image_encoder']:8.1f} ms, prefill {stages['prefill']:9.1f} ms, TTFT "
                    f"{stages['ttft']:9.1f} ms, decode {stages['decode_tok_s']:6.2f} tok/s, total "
                    f"{stages['total']:9.1f} ms")
        side_info = {s: opened[s].info for s in a.sides}
    finally:
        for o in opened.values():
            o.close()
    rss = {}
    for s in a.sides:                         # theirs: the median of its runs' /usr/bin/time -v
        theirs = [x for x in samples[s].pop("peak_rss_mb", []) if x is not None]
        rss[s] = (float(np.median(theirs)) if theirs else None) if s.startswith("theirs_") else (
            rss_probe(s, f, a) if a.rss else None)
    return {"label": f"peer: llama.cpp's mtmd vs ours, {a.layers} LLM layers, {a.threads} threads",
            "machine": info, "command": a.command,
            "config": {"layers": a.layers, "threads": a.threads, "runs": a.runs, "warmup": a.warmup,
                       "new_tokens": a.new_tokens, "ecg": str(a.ecg), "image": str(f.image),
                       "encoder_precision": a.encoder_precision, "repack": a.repack,
                       "order": "interleaved rounds: " + ", ".join(a.sides), **{k: str(v) for k, v in f.extra.items()}},
            "sides": side_info, **summarize(samples), "peak_rss_mb": rss}


def rss_probe(side: str, f: Files, a: PeerArgs) -> float | None:
    """Peak RSS (MB) of a fresh process that loads one of our sides and serves one request."""
    args = json.dumps({"side": side, "files": {k: str(v) for k, v in asdict(f).items() if k not in ("mmproj", "extra")},
                       "args": {"threads": a.threads, "new_tokens": a.new_tokens, "ecg": str(a.ecg),
                                "encoder_precision": a.encoder_precision, "repack": a.repack}})
    cmd = [TIME_BIN, "-v", sys.executable, "-m", "benchmarks.peer", args]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"RSS probe for {side} failed: {p.stderr.strip().splitlines()[-3:]}")
    return int(m.group(1)) / 1024


def _probe_main(raw: str) -> None:
    spec = json.loads(raw)
    fl = {k: Path(v) for k, v in spec["files"].items() if v != "None"}
    files = Files(bundle=fl["bundle"], llm=fl["llm"], mmproj={}, image=fl["image"])
    a = spec["args"]
    side = open_side(spec["side"], files, PeerArgs(0, a["threads"], Path(), Path(), Path(a["ecg"]),
                                                   new_tokens=a["new_tokens"], encoder_precision=a["encoder_precision"],
                                                   repack=a.get("repack", "auto")))
    side.run()
    side.close()


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


if __name__ == "__main__":
    _probe_main(sys.argv[1])
