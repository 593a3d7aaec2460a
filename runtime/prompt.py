"""The llava_v1 prompt and GEM's chunked tokenization around the one `<image>` sentinel.

Shared by training (tokenize = SentencePiece) and serving (tokenize = llama.cpp's tokenizer); a test
proves the two give the same ids.
"""
from __future__ import annotations

from typing import Callable, Sequence

from .constants import IGNORE_INDEX, IMAGE_TOKEN, IMAGE_TOKEN_INDEX, ROLES, SEP, SYSTEM_PROMPT

Tokenize = Callable[[str], Sequence[int]]   # text -> ids starting with BOS (as HF tokenizer(text).input_ids)


def build_prompt(question: str) -> str:
    """`<system> USER: <image>\\n<question> ASSISTANT:` with exactly one sentinel at the start of the user turn,
    as GEM's eval script builds it (any `<image>` the question carries is removed first)."""
    question = question.replace(IMAGE_TOKEN + "\n", "").replace(IMAGE_TOKEN, "").strip()
    user, assistant = ROLES
    return f"{SYSTEM_PROMPT}{SEP}{user}: {IMAGE_TOKEN}\n{question}{SEP}{assistant}:"


def prompt_chunks(prompt: str) -> tuple[str, str]:
    """The text before and after the sentinel."""
    parts = prompt.split(IMAGE_TOKEN)
    if len(parts) != 2:
        raise ValueError(f"prompt must hold exactly one {IMAGE_TOKEN}, found {len(parts) - 1}")
    return parts[0], parts[1]


def prompt_ids(prompt: str, tokenize: Tokenize) -> list[int]:
    """LLaVA's tokenizer_image_token: each chunk tokenized on its own, only the first keeps its BOS,
    IMAGE_TOKEN_INDEX (-200) between them. Differs from tokenizing the whole string, on purpose."""
    first, second = (list(tokenize(c)) for c in prompt_chunks(prompt))
    return first + [IMAGE_TOKEN_INDEX] + second[1:]


def split_prompt(ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """The prompt ids before and after the one IMAGE_TOKEN_INDEX: where the encoders' rows go."""
    where = [i for i, t in enumerate(ids) if t == IMAGE_TOKEN_INDEX]
    if len(where) != 1:
        raise ValueError(f"prompt ids must hold exactly one image sentinel ({IMAGE_TOKEN_INDEX}), found {len(where)}")
    return list(ids[:where[0]]), list(ids[where[0] + 1:])


def training_ids(question: str, answer: str, tokenize: Tokenize, eos_id: int) -> tuple[list[int], list[int]]:
    """(ids, labels) of one turn; loss only on the answer and its EOS (`</s>` of the template).

    The answer is tokenized on its own (its dummy-prefix piece stands for the space after `ASSISTANT:`),
    which is exactly the continuation the runtime generates after the prompt ids."""
    ids = prompt_ids(build_prompt(question), tokenize)
    answer_ids = list(tokenize(answer))[1:] + [eos_id]
    return ids + answer_ids, [IGNORE_INDEX] * len(ids) + answer_ids
