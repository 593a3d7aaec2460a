"""The corpus tokenizer: LLaMA-style SentencePiece that AutoTokenizer loads with the same ids."""
from gem_runtime.constants import DEFAULT_QUESTION
from gem_runtime.prompt import build_prompt, prompt_chunks, prompt_ids, training_ids
from gem_train.tokenizer import SpTokenizer


def test_autotokenizer_gives_the_same_ids(tiny_corpus):
    from transformers import AutoTokenizer

    d = tiny_corpus / "tokenizer"
    hf, sp = AutoTokenizer.from_pretrained(str(d)), SpTokenizer(d / "tokenizer.model")
    # Plain prose and the two prompt chunks. (transformers 5's LlamaTokenizer, tokenizers-based, splits runs of
    # spaces and a trailing newline differently from SentencePiece; the runtime uses llama.cpp's tokenizer,
    # which test_runtime checks against SentencePiece on such text.)
    texts = [*prompt_chunks(build_prompt(DEFAULT_QUESTION)), "Sinus rhythm at 72 bpm, QRS axis -30 degrees."]
    for t in texts:
        assert hf(t).input_ids == sp(t), t
    assert (hf.bos_token_id, hf.eos_token_id, hf.unk_token_id) == (1, 2, 0)


def test_sentinel_split_matches_llava(tiny_corpus):
    """LLaVA's pattern around the sentinel: `... ':' '▁'` -200 `'▁' <0x0A> ...` (29871, -200, 29871, 13 in LLaMA)."""
    sp = SpTokenizer(tiny_corpus / "tokenizer" / "tokenizer.model")
    ids = prompt_ids(build_prompt(DEFAULT_QUESTION), sp)
    s = ids.index(-200)
    assert ids.count(-200) == 1 and ids[0] == 1 and 1 not in ids[1:]
    assert sp.sp.id_to_piece(ids[s - 1]) == "▁" and sp.sp.id_to_piece(ids[s + 1]) == "▁"
    assert sp.sp.id_to_piece(ids[s + 2]) == "<0x0A>"
    full, labels = training_ids(DEFAULT_QUESTION, "Sinus rhythm.", sp, sp.eos_id)
    assert full[: len(ids)] == ids and full[-1] == sp.eos_id
    assert all(l == -100 for l in labels[: len(ids)]) and labels[len(ids):] == full[len(ids):]
