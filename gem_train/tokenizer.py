"""A LLaMA-style SentencePiece tokenizer trained on the corpus (GEM-7B uses LLaMA's own 32000-piece one).

Same special ids as LLaMA (unk 0, bos 1, eos 2), BPE with byte fallback, so llama.cpp reads it as SPM
and `AutoTokenizer` loads it as a LlamaTokenizer.
"""
from __future__ import annotations

import json
from pathlib import Path

from gem_runtime.errors import ConfigError

TOKENIZER_CONFIG = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                    "unk_token": "<unk>", "pad_token": "<unk>", "add_bos_token": True, "add_eos_token": False,
                    "legacy": True, "model_max_length": 4096}


def train_tokenizer(corpus_txt: Path, out_dir: Path, vocab_size: int) -> Path:
    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        _train(spm, corpus_txt, out_dir, vocab_size)
    except RuntimeError as e:          # e.g. "Vocabulary size too high (2000). Please set it to a value <= 1373."
        raise ConfigError(f"{corpus_txt}: tokenizer training failed: {str(e).split('] ')[-1]}") from None
    (out_dir / "tokenizer.vocab").unlink(missing_ok=True)
    write_hf_files(out_dir)
    return out_dir / "tokenizer.model"


def _train(spm, corpus_txt: Path, out_dir: Path, vocab_size: int) -> None:
    spm.SentencePieceTrainer.train(
        input=str(corpus_txt), model_prefix=str(out_dir / "tokenizer"), vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, split_digits=True,
        # LLaMA's normalizer: keep whitespace as written (the "USER: " before the sentinel and the "\n" after
        # it are real pieces), so llama.cpp's SPM tokenizer gives the same ids.
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=2, minloglevel=2)


def write_hf_files(out_dir: Path) -> None:
    """tokenizer_config.json / special_tokens_map.json next to tokenizer.model, for AutoTokenizer."""
    (out_dir / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(
        {k: TOKENIZER_CONFIG[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}, indent=2))


class SpTokenizer:
    """The tokenize function training uses: text -> ids with BOS, as HF `tokenizer(text).input_ids`."""

    def __init__(self, model_file: Path):
        import sentencepiece as spm

        if not Path(model_file).is_file():
            raise ConfigError(f"{model_file}: tokenizer not found (make one with `gem-train tokenizer`)")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        except (OSError, RuntimeError) as e:
            raise ConfigError(f"{model_file}: not a SentencePiece model ({' '.join(str(e).split())})") from None
        self.vocab_size = self.sp.get_piece_size()
        self.bos_id, self.eos_id = self.sp.bos_id(), self.sp.eos_id()

    def __call__(self, text: str) -> list[int]:
        return [self.bos_id] + self.sp.encode(text)

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) for i in ids])
