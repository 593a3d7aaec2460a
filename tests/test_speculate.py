"""Speculative decoding (gem_runtime.speculate) on the real llama.cpp: the tokens plain greedy decoding gives (flash
attention off, as speculation runs), whatever the drafts: the bundle's n-gram table, drafts that are always right
(every stop rule met inside a draft) and drafts that are always wrong; the KV cache left as plain decoding leaves
it (bit for bit on the tiny model; on the demo model a position written in a batch of k + 1 rounds differently,
which the f16 cache can turn into ~1% of a logit); and through gem-run and Interpreter, on the tiny and demo
models."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from clirun import run_main
from pydicom.data import get_testdata_file

from gem_runtime import Interpreter
from gem_runtime import constants as K
from gem_runtime.cli import main
from gem_runtime.errors import BundleError
from gem_runtime.llm import LlmTimings
from gem_runtime.timings import Timings
from gem_runtime.speculate import (
    NGRAM_FILE, Drafter, NgramTable, generate_speculative, lookup,
)

DEMO = Path(__file__).resolve().parents[1] / "bundles" / "demo"
DICOM = get_testdata_file("waveform_ecg.dcm")


def test_the_table_keeps_confident_continuations_and_round_trips(tmp_path):
    table = NgramTable.build([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7], [9, 2, 3, 8]])
    assert table.chain([1, 2, 3], 8) == [4, 5]           # (3, 4, 5) -> 6 or 7: not confident, the chain stops
    assert table.chain([0, 2, 3], 8) == []               # (2, 3) -> 4 twice, 8 once: keyed on 3 tokens only
    table.save(tmp_path / NGRAM_FILE)
    again = NgramTable.load(tmp_path / NGRAM_FILE)
    assert len(again) == len(table) and again.chain([1, 2, 3], 8) == [4, 5]
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(BundleError, match="bad.npz: not an n-gram draft table"):
        NgramTable.load(tmp_path / "bad.npz")
    assert lookup([5, 6, 7, 8, 5, 6], 3) == [7, 8, 5] and lookup([1, 2, 3], 2) == []


@pytest.fixture(scope="module")
def demo_with_table(tmp_path_factory) -> Path:
    """The demo bundle with a draft table of 60 freshly simulated reports, added as `gem-export ngrams` does."""
    from gem_export.build import add_ngrams
    from gem_train.corpus import write_corpus

    root = tmp_path_factory.mktemp("spec")
    write_corpus(root / "corpus", 60, seed=5, images=False, progress=False)
    bundle = root / "demo"
    shutil.copytree(DEMO, bundle)
    if (bundle / NGRAM_FILE).exists():
        return bundle
    add_ngrams(bundle, root / "corpus", log=lambda m: None)
    return bundle


class _Oracle:
    """Drafts what plain decoding will say next (every draft kept, so the stop rules are met inside drafts)."""

    def __init__(self, prompt_len: int, plain: list[int]):
        self.prompt_len, self.plain = prompt_len, plain

    def draft(self, history, k):
        done = len(history) - self.prompt_len
        return (self.plain + [K.EOS_ID])[done:done + k]


class _Wrong:
    """Drafts that are never the model's choice: <unk>, which it never writes."""

    def draft(self, history, k):
        return [0] * k


def _after_generation_logits(gem: Interpreter, pos: int) -> np.ndarray:
    return (gem.llm.eval_tokens([5], pos, "last"), gem.llm.logits())[1]


@pytest.mark.parametrize("which", ["tiny", "demo"])
def test_speculative_tokens_and_cache_are_plain_greedy(which, tiny_bundle, demo_with_table):
    bundle = tiny_bundle if which == "tiny" else demo_with_table
    with Interpreter.load(bundle, threads=2, draft_len=4) as gem:       # flash attention off, as it speculates
        llm = gem.llm
        t = Timings()
        record, img = gem._read(DICOM, None, None, t)
        rows = gem._encode(gem._prepare(record, img, None, t), t)
        table = NgramTable.build([[1, 2, 3]]) if which == "tiny" else bundle_table(bundle)
        for max_new in (1, 7, 40, 256):
            pos, _, suffix = gem._prefill(K.DEFAULT_QUESTION, rows, LlmTimings(), t)
            plain = llm.generate(pos, max_new, LlmTimings())
            fed = len(plain) if len(plain) < max_new else len(plain) - 1
            expected = _after_generation_logits(gem, pos + fed)
            for drafter in (Drafter(table), _Oracle(len(suffix), plain), _Wrong()):
                for k in (1, 3, 8):
                    pos, _, suffix = gem._prefill(K.DEFAULT_QUESTION, rows, LlmTimings(), t)
                    lt = LlmTimings()
                    out = generate_speculative(llm, pos, suffix, max_new, drafter, k, lt)
                    stats = lt.speculation
                    what = f"{which}, {type(drafter).__name__}, k={k}, max_new_tokens={max_new}"
                    assert out == plain, what
                    got = _after_generation_logits(gem, pos + fed)
                    if which == "tiny":     # its matmuls round the same in a batch: the cache is bit for bit plain's
                        assert np.array_equal(got, expected), what
                    else:                   # batched rows round differently (the f16 cache amplifies it): close
                        assert np.argmax(got) == np.argmax(expected), what
                        assert np.allclose(got, expected, rtol=0, atol=0.03 * np.abs(expected).max()), what
                    if isinstance(drafter, _Oracle) and len(plain) > 1:
                        assert stats.accepted > 0 and stats.steps < len(plain), what
                    if isinstance(drafter, _Wrong):
                        assert stats.accepted == 0 and stats.drafted > 0 or len(plain) <= 1, what


def bundle_table(bundle: Path) -> NgramTable:
    return NgramTable.load(bundle / NGRAM_FILE)


def test_gem_run_speculates_to_the_text_of_plain_decoding(demo_with_table, shared_data, capsys):
    files = [DICOM, shared_data / "vendor" / "philips_129DYPRG.xml"]
    runs = {}
    for k in (0, 3):
        with Interpreter.load(demo_with_table, threads=2, draft_len=k, flash_attn=False) as gem:
            runs[k] = [gem.interpret(f) for f in files]
    for plain, spec in zip(runs[0], runs[3]):
        assert spec.token_ids == plain.token_ids and spec.text == plain.text
        assert plain.speculation is None and spec.speculation.draft_len == 3
        assert spec.speculation.accepted > 0.3 * spec.new_tokens      # the reports' template is drafted
    code, out, err = run_main(main, [str(DICOM), "--bundle", str(demo_with_table), "--draft-len", "3", "--json"],
                              capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["token_ids"] == runs[3][0].token_ids and result["speculation"]["draft_len"] == 3
    assert 0 < result["speculation"]["acceptance"] <= 1


def test_gem_export_ngrams_adds_the_table_and_a_folder_without_a_corpus_is_one_line(tiny_bundle, tiny_corpus,
                                                                                    tmp_path, capsys):
    from gem_export.cli import main as export_main
    from gem_runtime.bundle import Bundle

    bundle = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, bundle)
    code, out, err = run_main(export_main, ["ngrams", "--bundle", str(bundle), "--corpus", str(tiny_corpus)], capsys)
    assert code == 0, err
    b = Bundle.open(bundle)
    assert b.manifest.ngram_file == NGRAM_FILE and NGRAM_FILE in b.verify_all() and len(b.ngram_table()) > 0
    assert b.bundle_id != Bundle.open(tiny_bundle).bundle_id and f"({b.bundle_id}): {NGRAM_FILE}" in out
    code, out, _ = run_main(export_main, ["inspect", str(bundle)], capsys)
    assert code == 0 and f"speculation drafts: {NGRAM_FILE}" in out
    (tmp_path / "empty").mkdir()
    code, _, err = run_main(export_main, ["ngrams", "--bundle", str(bundle), "--corpus", str(tmp_path / "empty")],
                            capsys)
    assert code == 2 and err.count("\n") == 1 and "records.json: not found" in err, err


def test_speculation_on_a_bare_gguf_keeps_the_tokens_and_states_the_bound(tiny_corpus, tmp_path, capsys):
    """gem-bench speculation-llm (how the 32-layer gem-7b GGUF is measured): every draft length decodes the
    plain tokens from the same prefilled prompt, and the single-token bandwidth bound is reported beside them."""
    from benchmarks.cli import main as bench

    gguf = DEMO / json.loads((DEMO / "manifest.json").read_text())["llm"]["q4_k_m"]
    code, out, err = run_main(bench, ["speculation-llm", "--gguf", str(gguf), "--tokenizer",
                                      str(DEMO / "tokenizer.model"), "--corpus", str(tiny_corpus), "--prompts", "2",
                                      "--new-tokens", "24", "--draft-lengths", "2,1", "--prefill-positions", "100",
                                      "--oracle-acceptance", "0.7", "--out", str(tmp_path / "r")],
                              capsys)
    assert code == 0, err
    r = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [(run["draft_len"], run["drafts"][:6]) for run in r["runs"]] == [
        (0, ""), (1, "n-gram"), (2, "n-gram"), (1, "oracle"), (2, "oracle")]
    assert all(run["identical"] == 2 and run["tokens"] == 48 for run in r["runs"])   # whatever the drafts
    assert r["runs"][2]["drafted"] > 0 and 0 <= r["runs"][2]["accepted"] <= r["runs"][2]["drafted"]
    oracle = r["runs"][3]                                     # one token drafted a step, right 70% of the time
    assert 0.5 < oracle["accepted"] / oracle["drafted"] < 0.9
    assert r["decode_bound"]["prefill_positions"] == 100 and r["decode_bound"]["prefill_ms"] > 0
    assert r["decode_bound"]["bound_tok_s"] == pytest.approx(
        r["decode_bound"]["read_gb_s"] * 1e9 / r["decode_bound"]["bytes_per_token"])
    md = (tmp_path / "r" / "results.md").read_text()
    assert "Single-token decode bound" in md and "| 2 | " in md.split("tokens per step at p")[1]
    code, out, err = run_main(bench, ["speculation-llm", "--gguf", str(gguf), "--tokenizer",
                                      str(DEMO / "tokenizer.model"), "--corpus", str(tiny_corpus),
                                      "--draft-lengths", "two", "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "--draft-lengths" in err and "Traceback" not in err
