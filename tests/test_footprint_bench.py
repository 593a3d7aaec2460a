"""gem-bench footprint's wiring on the tiny bundle: a deeper GGUF made by repeating the layers loads in the runtime
and answers, and one probe process reports its load, TTFT, decode rate and peak RSS. Nothing here asserts a speed."""
import json

import gguf

from benchmarks.footprint import expand_gguf, make_bundle, markdown, run_footprint, smallest_cart_gib
from gem_runtime.bundle import Bundle


def _blocks(path) -> int:
    return int(gguf.GGUFReader(str(path)).fields["llama.block_count"].parts[-1][0])


def test_a_deeper_bundle_is_measured_in_fresh_processes(tiny_bundle, tmp_path, shared_data):
    src = Bundle.open(tiny_bundle)
    n = _blocks(tiny_bundle / src.manifest.llm["f16"])
    deep = make_bundle(tiny_bundle, tmp_path / "deep", 3 * n, ("f16",), quantize=tmp_path / "unused", threads=1,
                       log=lambda m: None)
    assert _blocks(deep / "llm-f16.gguf") == 3 * n
    reader = gguf.GGUFReader(str(deep / "llm-f16.gguf"))
    names = {t.name for t in reader.tensors}
    assert f"blk.{3 * n - 1}.ffn_down.weight" in names and f"blk.{3 * n}.ffn_down.weight" not in names
    same = [t for t in reader.tensors if t.name in ("blk.0.attn_q.weight", f"blk.{n}.attn_q.weight")]
    assert (same[0].data == same[1].data).all()                  # block n repeats block 0
    m = Bundle.open(deep).manifest
    assert m.model["num_hidden_layers"] == 3 * n and "timing and memory only" in m.note
    assert expand_gguf(tiny_bundle / "missing.gguf", deep / "llm-f16.gguf", 1) == deep / "llm-f16.gguf"   # cached
    written = (deep / "manifest.json").stat().st_mtime_ns
    make_bundle(tiny_bundle, deep, 3 * n, ("f16",), quantize=tmp_path / "unused", threads=1, log=lambda m: None)
    assert (deep / "manifest.json").stat().st_mtime_ns == written        # the cache holds every type asked for

    ecg = shared_data / "real" / "ludb" / "1.hea"
    result = run_footprint(deep, ("f16",), ecg, new_tokens=3, out=tmp_path / "out", log=lambda m: None)
    [row] = result["rows"]
    assert row["cold"]["cold"] and row["cold"]["evicted_by"] and not row["warm_t1"]["cold"]
    assert row["cold"]["threads"] == 2 and row["warm_t1"]["threads"] == 1
    assert row["cold"]["new_tokens"] == 3 and row["cold"]["ttft_ms"] > 0 and row["cold"]["decode_tok_s"] > 0
    assert 50 < row["peak_rss_mib"] < 8192 and row["smallest_cart_gib"] == smallest_cart_gib(row["peak_rss_mib"])
    assert json.loads((tmp_path / "out" / "results.json").read_text())["rows"][0]["type"] == "f16"
    assert "| f16 |" in markdown(result, "gem-bench footprint ...")


def test_the_smallest_cart_leaves_room_for_the_os():
    assert smallest_cart_gib(3 * 1024) == 4          # 3 GiB + 1 for the OS
    assert smallest_cart_gib(3.5 * 1024) == 8
    assert smallest_cart_gib(100 * 1024) is None
