"""results.json, results.md (markdown table) and chart.png from a latency results dict; the depth
extrapolation of two gem-7b-shape runs to 32 layers."""
from __future__ import annotations

import json
from pathlib import Path

from .latency import CHART_STAGES, RATE_STAGES, TIME_STAGES
from .machine import machine_line

# Stages whose cost grows with the LLM depth; the others (read, render, encoders) do not depend on it.
LLM_STAGES = ("prefill", "decode")


def write_results(results: dict, out: Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "md": out / "results.md", "chart": out / "chart.png"}
    paths["json"].write_text(json.dumps(results, indent=2))
    paths["md"].write_text(markdown(results))
    draw_chart(results, paths["chart"])
    return paths


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
              f"- ours: LLM {results['ours']['quant']} on {results['ours']['backends']['llm']}, encoders on "
              f"{results['ours']['backends']['ecg_encoder']} / {results['ours']['backends']['image_encoder']}; "
              f"prefix KV reused: {results['ours'].get('prefix_kv_reused')}",
              f"- reference: {results['reference']['backend']}",
              f"- {c['runs']} runs after {c['warmup']} warmup, {c['order']}; {c['threads']} threads on both sides; "
              f"{c['new_tokens']} new tokens (EOS ignored on both sides); LLM depth {c['llm_layers']} layers; "
              f"{results['ours']['prompt_positions']} prompt positions (ref {results['reference']['prompt_positions']})",
              "", "| stage | ours median | ours p90 | ref median | ref p90 | speed-up (ref/ours) |",
              "|---|---:|---:|---:|---:|---:|"]
    for key, _ in TIME_STAGES + RATE_STAGES:
        s = st[key]
        u = s["unit"]
        name = s["label"] + (" (ours/ref)" if u == "tok/s" else "")
        lines.append(f"| {name} | {_num(s['ours']['median'], u)} | {_num(s['ours']['p90'], u)} | "
                     f"{_num(s['ref']['median'], u)} | {_num(s['ref']['p90'], u)} | **{s['speedup']:.2f}x** |")
    lm = results["load_ms"]
    lines.append(f"| load (one sample) | {_num(lm['ours'], 'ms')} | | {_num(lm['ref'], 'ms')} | | {lm['speedup']:.2f}x |")
    rss = results.get("peak_rss_mb")
    if rss:
        lines.append(f"| peak RSS, fresh process, 1 request | {rss['ours']['after_request']:.0f} MB | | "
                     f"{rss['ref']['after_request']:.0f} MB | | {rss['ref']['after_request'] / rss['ours']['after_request']:.2f}x |")
        lines += ["", f"Peak RSS (VmHWM) of one fresh process per side: after imports "
                      f"{rss['ours']['after_imports']:.0f} / {rss['ref']['after_imports']:.0f} MB, after load "
                      f"{rss['ours']['after_load']:.0f} / {rss['ref']['after_load']:.0f} MB (ours / ref)."]
    if "texts" in results:
        lines += ["", f"Same generated text on both sides: {results['texts']['equal']}."]
    return "\n".join(lines) + "\n"


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
    colors = ["#8c8c8c", "#c7a15a", "#d65f5f", "#956cb4", "#4878d0", "#6acc64"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.4]})
    sides = (("ours", "ours"), ("ref", "reference"))
    for row, (side, _) in enumerate(sides):
        left = 0.0
        for key, col in zip(CHART_STAGES, colors):
            v = st[key][side]["median"] / 1000
            ax1.barh(row, v, left=left, color=col, label=st[key]["label"] if row == 0 else None)
            left += v
        ax1.text(left, row, f" {left:.2f} s", va="center")
    ax1.set_yticks([0, 1], [s[1] for s in sides])
    ax1.invert_yaxis()
    ax1.set_xlabel("seconds (median per stage)")
    ax1.set_title(f"end to end: {st['total']['speedup']:.1f}x faster")
    ax1.legend(fontsize=8, loc="lower right")
    ax1.margins(x=0.15)

    keys = list(CHART_STAGES) + ["ttft", "total"]
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
        raise ValueError(f"need two different depths to fit a slope, both runs have {la} layers")
    out = json.loads(json.dumps(b))
    n = b["config"]["new_tokens"]
    if a["config"]["new_tokens"] != n:
        raise ValueError(f"new tokens differ: {a['config']['new_tokens']} vs {n}")
    st = out["stages"]
    for side in ("ours", "ref"):
        med = {}
        for key, _ in TIME_STAGES:
            va, vb = a["stages"][key][side]["median"], b["stages"][key][side]["median"]
            med[key] = (va + (to_layers - la) * (vb - va) / (lb - la)) if key in LLM_STAGES else (va + vb) / 2
        gap_ttft = _mean_gap(a, b, side, "ttft", ("read_preprocess", "render", "ecg_encoder", "image_encoder", "prefill"))
        gap_total = _mean_gap(a, b, side, "total", ("ttft", "decode"))
        med["ttft"] = sum(med[k] for k in ("read_preprocess", "render", "ecg_encoder", "image_encoder", "prefill")) + gap_ttft
        med["total"] = med["ttft"] + med["decode"] + gap_total
        for key, _ in TIME_STAGES:
            st[key][side] = {"median": med[key], "p90": med[key], "runs": []}
        st["decode_tok_s"][side] = {"median": n / (med["decode"] / 1000), "p90": n / (med["decode"] / 1000), "runs": []}
    for key, _ in TIME_STAGES:
        st[key]["speedup"] = st[key]["ref"]["median"] / st[key]["ours"]["median"]
    st["decode_tok_s"]["speedup"] = st["decode_tok_s"]["ours"]["median"] / st["decode_tok_s"]["ref"]["median"]
    out["config"]["llm_layers"] = to_layers
    out["extrapolated"] = {"from_layers": [la, lb], "to_layers": to_layers,
                           "slopes_ms_per_layer": {side: {k: (b["stages"][k][side]["median"] - a["stages"][k][side]["median"])
                                                          / (lb - la) for k in LLM_STAGES} for side in ("ours", "ref")}}
    for side in ("ours", "ref"):       # memory grows with depth too
        ra, rb = (r.get("peak_rss_mb", {}).get(side) for r in (a, b))
        if ra and rb:
            out["peak_rss_mb"][side] = {k: ra[k] + (to_layers - la) * (rb[k] - ra[k]) / (lb - la) for k in ra}
    la_ms, lb_ms = a["load_ms"], b["load_ms"]
    out["load_ms"] = {s: la_ms[s] + (to_layers - la) * (lb_ms[s] - la_ms[s]) / (lb - la) for s in ("ours", "ref")}
    out["load_ms"]["speedup"] = out["load_ms"]["ref"] / out["load_ms"]["ours"]
    out["ours"]["prompt_positions"] = b["ours"]["prompt_positions"]
    out.pop("texts", None)
    return out


def _mean_gap(a: dict, b: dict, side: str, whole: str, parts: tuple) -> float:
    gaps = [r["stages"][whole][side]["median"] - sum(r["stages"][p][side]["median"] for p in parts) for r in (a, b)]
    return max(0.0, sum(gaps) / 2)
