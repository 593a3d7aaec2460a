"""results.json, results.md (markdown table) and chart.png from a latency results dict; the depth
extrapolation of two gem-7b-shape runs to 32 layers."""
from __future__ import annotations

import json
import re
from pathlib import Path

from .latency import CHART_STAGES, OURS_ONLY, RATE_STAGES, TIME_STAGES
from .machine import machine_line
from .roof import fractions as roof_fractions
from .roof import markdown as roof_markdown
from gem_runtime.errors import GemEdgeError

# Stages whose cost grows with the LLM depth; the others (read, render, encoders) do not depend on it.
LLM_STAGES = ("prefill", "decode")
PRE_LLM = ("read_preprocess", "measure", "render", "ecg_encoder", "image_encoder", "prefill")   # before the 1st token


def write_results(results: dict, out: Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "md": out / "results.md", "chart": out / "chart.png"}
    paths["json"].write_text(json.dumps(results, indent=2))
    paths["md"].write_text(markdown(results))
    draw_chart(results, paths["chart"])
    return paths


def _repack_words(ours: dict, config: dict) -> str:
    """How ggml's weights were laid out, and who chose it (results written before the option read "as tuned")."""
    how = "prompt unrepacked, decoding repacked" if ours.get("decode_repacked") else \
        "weight repacking " + ("on" if ours.get("repack", True) else "off")
    chosen = "as given" if config.get("repack", "auto") != "auto" else "as tuned"
    return "" if how == "weight repacking on" and chosen == "as tuned" else f" ({how}, {chosen})"


def markdown(results: dict) -> str:
    c, st = results["config"], results["stages"]
    title = results.get("label") or Path(c["bundle"]).name
    extrapolated = results.get("extrapolated")
    lines = [f"### {title}" + (" (EXTRAPOLATED, not measured)" if extrapolated else ""), ""]
    if extrapolated:
        lines += [f"Linear fit per LLM stage from measured depths {extrapolated['from_layers']} to "
                  f"{extrapolated['to_layers']} layers; read, render and encoders are the mean of the measured runs.",
                  ""]
    lines += [f"- machine: {machine_line(results['machine'])}",
              f"- ours: LLM {results['ours']['quant']}"
              + _repack_words(results["ours"], c)
              + f" on {results['ours']['backends']['llm']}, encoders on "
              f"{results['ours']['backends']['ecg_encoder']} / {results['ours']['backends']['image_encoder']}; "
              f"prefix KV reused: {results['ours'].get('prefix_kv_reused')}",
              f"- reference: {results['reference']['backend']}",
              f"- {c['runs']} runs after {c['warmup']} warmup, {c['order']}; {c['threads']} threads on both sides; "
              f"{c['new_tokens']} new tokens (EOS ignored on both sides); LLM depth {c['llm_layers']} layers; "
              f"{results['ours']['prompt_positions']} prompt positions (ref {results['reference']['prompt_positions']})",
              "", "| stage | ours median | ours p90 | ref median | ref p90 | speed-up (ref/ours) |",
              "|---|---:|---:|---:|---:|---:|"]
    for key, _ in TIME_STAGES + RATE_STAGES:
        if key not in st:                      # results written before the stage existed
            continue
        s = st[key]
        u = s["unit"]
        name = s["label"] + (" (ours/ref)" if u == "tok/s" else "")
        ratio = "ours only" if s["speedup"] is None else f"**{s['speedup']:.2f}x**"
        ref = ("-", "-") if key in OURS_ONLY else (_num(s["ref"]["median"], u), _num(s["ref"]["p90"], u))
        lines.append(f"| {name} | {_num(s['ours']['median'], u)} | {_num(s['ours']['p90'], u)} | "
                     f"{ref[0]} | {ref[1]} | {ratio} |")
    lm = results["load_ms"]
    if lm["ours"] is None:
        lines.append("| load | not extrapolated | | not extrapolated | | |")
    else:
        lines.append(f"| load (one sample) | {_num(lm['ours'], 'ms')} | | {_num(lm['ref'], 'ms')} | | "
                     f"{lm['speedup']:.2f}x |")
    rss = results.get("peak_rss_mb")
    if rss:
        lines.append(f"| peak RSS, fresh process, 1 request | {rss['ours']['after_request']:.0f} MB | | "
                     f"{rss['ref']['after_request']:.0f} MB | | {rss['ref']['after_request'] / rss['ours']['after_request']:.2f}x |")
        lines += ["", f"Peak RSS (VmHWM) of one fresh process per side: after imports "
                      f"{rss['ours']['after_imports']:.0f} / {rss['ref']['after_imports']:.0f} MB, after load "
                      f"{rss['ours']['after_load']:.0f} / {rss['ref']['after_load']:.0f} MB (ours / ref)."]
    if "texts" in results:
        lines += ["", f"Same generated text on both sides: {results['texts']['equal']}."]
    if "roof_fractions" in results:
        lines += roof_markdown(results["roof"], results["roof_fractions"])
    if results.get("roof", {}).get("shape", {}).get("width") != GEM_7B_WIDTH:
        return "\n".join(lines) + "\n"
    lines += ["", "| goal at gem-7b shape (GEM's HF path = 1x) | target | this run | met? |", "|---|---:|---:|---|"]
    for key, name, target in GOALS:
        got = st[key]["speedup"]
        lines.append(f"| {name} | >= {target:g}x | {got:.2f}x | {'yes' if got >= target else 'no'} |")
    return "\n".join(lines) + "\n"


# issue 16's goals at GEM-7B shape (2 layers and the 32-layer extrapolation), as speed-ups over GEM's HF path
GEM_7B_WIDTH = 4096
GOALS = (("total", "end to end", 4.0), ("decode_tok_s", "decode tok/s", 6.0), ("ttft", "time to first token", 2.0))


def _num(v: float, unit: str) -> str:
    if unit == "tok/s":
        return f"{v:.1f} tok/s"
    return f"{v / 1000:.2f} s" if v >= 10000 else f"{v:.1f} ms"


def draw_chart(results: dict, path: Path) -> Path:
    """Left: where the end-to-end time goes (stacked stages), ours vs ref. Right: each stage side by side
    (log scale) with its speed-up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = results["stages"]
    colors = dict(zip(CHART_STAGES + ("other",), ["#8c8c8c", "#82c6e2", "#c7a15a", "#d65f5f", "#956cb4",
                                                    "#4878d0", "#6acc64", "#e0e0e0"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1, 1.4]})
    sides = (("ours", "ours"), ("ref", "reference"))
    for row, (side, _) in enumerate(sides):
        parts = [(k, st[k]["label"], st[k][side]["median"] / 1000) for k in CHART_STAGES if k in st]
        total = st["total"][side]["median"] / 1000      # bar length = end-to-end median
        parts.append(("other", "other (tokenize, glue; unattributed)", max(0.0, total - sum(p[2] for p in parts))))
        left = 0.0
        for key, label, v in parts:
            ax1.barh(row, v, left=left, color=colors[key], label=label if row == 0 else None)
            left += v
        ax1.text(left, row, f" {total:.2f} s", va="center")
    ax1.set_yticks([0, 1], [s[1] for s in sides])
    ax1.invert_yaxis()
    ax1.set_xlabel("seconds (median per stage; bar = end-to-end median)")
    ax1.set_title(f"end to end: {st['total']['speedup']:.2f}x (ref / ours)")
    ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    ax1.margins(x=0.18)

    keys = [k for k in CHART_STAGES if k in st and k not in OURS_ONLY] + ["ttft", "total"]
    xs = range(len(keys))
    w = 0.4
    ours_v = [st[k]["ours"]["median"] for k in keys]
    ref_v = [st[k]["ref"]["median"] for k in keys]
    ax2.bar([x - w / 2 for x in xs], ours_v, w, label="ours", color="#4878d0")
    ax2.bar([x + w / 2 for x in xs], ref_v, w, label="reference", color="#d65f5f")
    for x, k in zip(xs, keys):
        ax2.text(x, max(st[k]["ours"]["median"], st[k]["ref"]["median"]) * 1.15, f"{st[k]['speedup']:.1f}x",
                 ha="center", fontsize=8)
    ax2.set_yscale("log")
    ax2.set_ylim(top=max(ours_v + ref_v) * 4)
    ax2.set_xticks(list(xs), [st[k]["label"].replace(" (all new tokens)", "") for k in keys], rotation=30,
                   ha="right", fontsize=8)
    ax2.set_ylabel("ms (median, log)")
    ax2.set_title("per stage, speed-up = ref / ours")
    ax2.legend(fontsize=8)
    title = results.get("label") or Path(results["config"]["bundle"]).name
    if results.get("extrapolated"):
        title += " (EXTRAPOLATED)"
    fig.suptitle(f"{title}: {results['config']['new_tokens']} new tokens, {results['config']['threads']} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def extrapolate(a: dict, b: dict, to_layers: int = 32) -> dict:
    """Two runs of the same shape at depths La != Lb -> the same table at `to_layers`, per stage
    t(L) = t(La) + (L - La) * (t(Lb) - t(La)) / (Lb - La) for LLM stages; depth-free stages are averaged.
    Composite stages (TTFT, total, tok/s) are rebuilt from the parts plus the measured unattributed time."""
    la, lb = a["config"]["llm_layers"], b["config"]["llm_layers"]
    if la == lb:
        raise GemEdgeError(f"need two different depths to fit a slope, both runs have {la} layers")
    out = json.loads(json.dumps(b))
    n = b["config"]["new_tokens"]
    if a["config"]["new_tokens"] != n:
        raise GemEdgeError(f"new tokens differ: {a['config']['new_tokens']} vs {n}")
    st = out["stages"]
    for side in ("ours", "ref"):
        med = {}
        for key, _ in TIME_STAGES:
            if key not in a["stages"] or key not in b["stages"]:
                med[key] = 0.0
                continue
            va, vb = a["stages"][key][side]["median"], b["stages"][key][side]["median"]
            med[key] = (va + (to_layers - la) * (vb - va) / (lb - la)) if key in LLM_STAGES else (va + vb) / 2
        before = tuple(k for k in PRE_LLM if k in a["stages"] and k in b["stages"])
        gap_ttft = _mean_gap(a, b, side, "ttft", before)
        gap_total = _mean_gap(a, b, side, "total", ("ttft", "decode"))
        med["ttft"] = sum(med[k] for k in before) + gap_ttft
        med["total"] = med["ttft"] + med["decode"] + gap_total
        for key, _ in TIME_STAGES:
            if key in st:
                st[key][side] = {"median": med[key], "p90": med[key], "runs": []}
        st["decode_tok_s"][side] = {"median": n / (med["decode"] / 1000), "p90": n / (med["decode"] / 1000), "runs": []}
    for key, _ in TIME_STAGES:
        if key in st and key not in OURS_ONLY:
            st[key]["speedup"] = st[key]["ref"]["median"] / st[key]["ours"]["median"]
    st["decode_tok_s"]["speedup"] = st["decode_tok_s"]["ours"]["median"] / st["decode_tok_s"]["ref"]["median"]
    out["config"]["llm_layers"] = to_layers
    out["label"] = re.sub(r"\d+ LLM layers", f"{to_layers} LLM layers", b.get("label") or "") or \
        f"{Path(b['config']['bundle']).name} at {to_layers} layers"
    out["extrapolated"] = {"from_layers": [la, lb], "to_layers": to_layers,
                           "slopes_ms_per_layer": {side: {k: (b["stages"][k][side]["median"] - a["stages"][k][side]["median"])
                                                          / (lb - la) for k in LLM_STAGES} for side in ("ours", "ref")}}
    for side in ("ours", "ref"):       # memory grows with depth too
        ra, rb = (r.get("peak_rss_mb", {}).get(side) for r in (a, b))
        if ra and rb:
            out["peak_rss_mb"][side] = {k: ra[k] + (to_layers - la) * (rb[k] - ra[k]) / (lb - la) for k in ra}
    # Load is one sample per depth and mostly disk / page-cache state, not a per-layer cost: a line through two
    # such samples can even fall below zero (it did: 5.8 s at 2 layers, 4.6 s at 4). Not extrapolated.
    out["load_ms"] = {"ours": None, "ref": None, "speedup": None}
    out["ours"]["prompt_positions"] = b["ours"]["prompt_positions"]
    out.pop("texts", None)
    if "roof" in a and "roof" in b:      # the GGUF's bytes a step reads grow by the same amount per layer
        per_layer = (b["roof"]["ours_bytes_per_token"] - a["roof"]["ours_bytes_per_token"]) / (lb - la)
        ours_bytes = a["roof"]["ours_bytes_per_token"] + (to_layers - la) * per_layer
        out["roof_fractions"] = roof_fractions(b["roof"], st, b["ours"]["prompt_positions"],
                                               b["ours"].get("prefill_start", 0), b["reference"]["prompt_positions"],
                                               layers=to_layers, ours_bytes=ours_bytes)
    return out


def _mean_gap(a: dict, b: dict, side: str, whole: str, parts: tuple) -> float:
    gaps = [r["stages"][whole][side]["median"] - sum(r["stages"][p][side]["median"] for p in parts) for r in (a, b)]
    return max(0.0, sum(gaps) / 2)
