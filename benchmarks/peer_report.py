"""results.json and the markdown table of `gem-bench peer`: medians and p90 per side and stage, the speed-ups
computed from those same medians (theirs / ours for times, ours / theirs for tok/s), and issue 28's targets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# (key, label, unit) in request order; "ms" lower is better, "tok/s" higher is better
STAGES = (("read_preprocess", "read + preprocess", "ms"), ("measure", "ECG measurements", "ms"),
          ("render", "image render", "ms"), ("ecg_encoder", "ECG encoder", "ms"),
          ("image_encoder", "image encoder", "ms"), ("prefill", "LLM prefill", "ms"),
          ("hand_over", "of which, the prompt's KV state to the decode context (--repack split)", "ms"),
          ("ttft", "time to first token", "ms"), ("decode", "decode (all new tokens)", "ms"),
          ("total", "end to end", "ms"), ("decode_tok_s", "decode tok/s", "tok/s"),
          ("decode_tok_s_compute", "decode tok/s, llama_decode only (llama_perf)", "tok/s"))
RUN_KEYS = tuple(k for k, _, _ in STAGES) + ("peak_rss_mb",)
SIDE_NAMES = {"theirs_f16": "theirs, f16 mmproj", "theirs_q8_0": "theirs, q8_0 mmproj",
              "ours_image": "ours, image tower only", "ours_gem": "ours, GEM (ECG + image towers)",
              "ours_image_int8": "ours, image tower only, int8", "ours_gem_int8": "ours, GEM, int8 encoders"}
COMPARISONS = tuple((ours, theirs) for ours in ("ours_image", "ours_image_int8", "ours_gem", "ours_gem_int8")
                    for theirs in ("theirs_f16", "theirs_q8_0"))


def speedup(ours: float, theirs: float, unit: str) -> float | None:
    """theirs / ours for a time, ours / theirs for a rate; None where either is missing or zero."""
    if not ours or not theirs:
        return None
    return ours / theirs if unit == "tok/s" else theirs / ours


def summarize(samples: dict[str, dict[str, list[float]]]) -> dict:
    """{"stages": {key: {label, unit, side: {median, p90, runs}}}, "speedup": {"A_vs_B": {key: x}}} from each side's
    kept runs (a stage a side does not have is left out of it)."""
    stages = {}
    for key, label, unit in STAGES:
        row = {"label": label, "unit": unit}
        for side, s in samples.items():
            runs = np.asarray(s.get(key, []), float)
            if runs.size:
                row[side] = {"median": float(np.median(runs)), "p90": float(np.percentile(runs, 90)),
                             "runs": runs.tolist()}
        stages[key] = row
    out = {}
    for ours, theirs in COMPARISONS:
        if ours in samples and theirs in samples:
            out[f"{ours}_vs_{theirs}"] = {
                key: speedup(row[ours]["median"], row[theirs]["median"], row["unit"])
                for key, row in stages.items() if ours in row and theirs in row}
    return {"stages": stages, "speedup": out}


def targets(r: dict, ours: str = "ours_image") -> list[tuple[str, str, str, bool | None]]:
    """Issue 28's targets against llama.cpp's stack for one of our image-only sides (and the GEM side of the same
    encoder precision): (goal, target, this run, met?)."""
    sp = r["speedup"]
    f16, q8 = sp.get(f"{ours}_vs_theirs_f16", {}), sp.get(f"{ours}_vs_theirs_q8_0", {})
    rows = [("image encoder vs their f16 mmproj", ">= 4x", f16.get("image_encoder"), 4.0),
            ("image encoder vs their q8_0 mmproj", "> 1x", q8.get("image_encoder"), 1.0 + 1e-9),
            ("time to first token (f16 mmproj)", ">= 1.5x", f16.get("ttft"), 1.5),
            ("end to end (f16 mmproj)", ">= 1.5x", f16.get("total"), 1.5),
            ("decode tok/s", ">= 0.95x", f16.get("decode_tok_s"), 0.95)]
    gem_side = ours.replace("ours_image", "ours_gem")
    gem = [sp.get(f"{gem_side}_vs_theirs_{t}", {}).get("total") for t in ("f16", "q8_0")]
    gem = [g for g in gem if g is not None]
    rows.append(("GEM (both towers) end to end vs theirs (one tower, faster mmproj)", "> 1x",
                 min(gem) if len(gem) == 2 else None, 1.0 + 1e-9))
    return [(goal, want, "-" if x is None else f"{x:.2f}x", None if x is None else x >= bound)
            for goal, want, x, bound in rows]


def markdown(r: dict) -> str:
    from .machine import machine_line

    st, sides = r["stages"], list(r["sides"])
    lines = [f"### {r['label']}", "", f"- machine: {machine_line(r['machine'])}"]
    if r.get("command"):
        lines.append(f"- command: `{r['command']}`")
    c = r["config"]
    lines.append(f"- {c['runs']} runs after {c['warmup']} warmup, {c['order']}; {c['threads']} threads everywhere; "
                 f"{c['new_tokens']} new tokens (EOS ignored)")
    for s in sides:
        i = r["sides"][s]
        lines.append(f"- {SIDE_NAMES.get(s, s)}: {i.get('prompt_positions')} prompt positions; "
                     + ", ".join(f"{k} {v}" for k, v in i.items() if k not in ("text", "prompt_positions", "command")))
    lines += ["", "| stage, median (p90) | " + " | ".join(SIDE_NAMES.get(s, s) for s in sides) + " |",
              "|---|" + "---:|" * len(sides)]
    for row in st.values():
        if any(s in row for s in sides):
            lines.append(f"| {row['label']} | " + " | ".join(
                f"{_num(row[s]['median'], row['unit'])} ({_num(row[s]['p90'], row['unit'])})" if s in row else "-"
                for s in sides) + " |")
    rss = r.get("peak_rss_mb") or {}
    if any(v for v in rss.values()):
        lines.append("| peak RSS, one process: load + 1 request | "
                     + " | ".join(f"{rss[s]:.0f} MB" if rss.get(s) else "-" for s in sides) + " |")
    pairs = [k for k in (f"{a}_vs_{b}" for a, b in COMPARISONS) if k in r["speedup"]]
    lines += ["", "Speed-up, theirs / ours for times and ours / theirs for tok/s, from the medians above:", "",
              "| stage | " + " | ".join(p.replace("_vs_", " vs ") for p in pairs) + " |", "|---|" + "---:|" * len(pairs)]
    for key, row in st.items():
        ratios = [r["speedup"][p].get(key) for p in pairs]
        if any(x is not None for x in ratios):
            lines.append(f"| {row['label']} | " + " | ".join("-" if x is None else f"**{x:.2f}x**" for x in ratios)
                         + " |")
    for ours in ("ours_image", "ours_image_int8"):
        if ours in sides:
            lines += ["", f"| target (issue 28), {SIDE_NAMES[ours]} | wanted | this run | met? |", "|---|---:|---:|---|"]
            lines += [f"| {g} | {w} | {x} | {'-' if ok is None else 'yes' if ok else '**no**'} |"
                      for g, w, x, ok in targets(r, ours)]
    return "\n".join(lines) + "\n"


def write(results: dict, out: Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "md": out / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=2))
    paths["md"].write_text(markdown(results))
    return paths


def _num(x: float, unit: str) -> str:
    if unit == "tok/s":
        return f"{x:.2f} tok/s"
    return f"{x / 1000:.2f} s" if x >= 10000 else f"{x:.1f} ms"
