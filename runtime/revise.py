"""Revise a report whose rhythm statement the measurements contradict: the model's own most likely report among
the few it would write there that they do not contradict.

The diagnosis grounding marks a rhythm statement our measurements contradict ("Irregularly irregular rhythm ...,
consistent with atrial fibrillation" over a regular RR with a P wave before every QRS), but the report still says
it. With revision on, the report keeps the model's words up to the sentence that states it (or its contradicted
evidence), and the model writes on from there greedily after each of its next most likely first words in turn
(up to MAX_OPENERS); the first text whose rhythm statements from there on are not contradicted, and which still
names a rhythm, is kept. Where none is, each contradicted rhythm name alone is replaced by the one (`CANDIDATES`)
the model scores highest at its place among those the measurements allow, and the model goes on after it; a name
the model scores below MIN_NAME_LOGPROB there is one it does not write (the demo model never saw "atrial
flutter": -86), and what it writes after such a name is not a report, so that statement stays flagged instead.

The model's own text and each revision (its words, the reason, what was tried) stay with the result. It is opt-in
(`gem-run --revise-rhythm`): the revised text is no longer GEM's own, and a measurement that is wrong (a P wave
missed in noise) would revise a right statement into a wrong one.

The model is reached through `ScoringModel` (next-token log-probabilities; greedy decoding after a prefix), so the
same revision runs on llama.cpp (`LlamaScorer`) and on the PyTorch model (`gem-train eval --real --revise`).
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from .diagnosis import CONTRADICTED, CRITERIA, EVIDENCE_FINDINGS, RHYTHM_FINDINGS, check_diagnoses

# The rhythm diagnoses a statement may be revised to: a rate class or an atrial arrhythmia, never the bare
# "sinus rhythm" (it would say less than the statement it replaces) nor a statement of evidence.
CANDIDATES: tuple[tuple[str, str], ...] = tuple(
    (c.finding, c.name) for c in CRITERIA if c.rhythm and not c.evidence and c.finding != "sinus_rhythm")
MAX_REVISIONS = 3                      # contradicted rhythm names replaced per report, in text order
MAX_OPENERS = 6                        # first words tried where the contradicted sentence begins
MIN_NAME_LOGPROB = -40.0               # a name put in by the model's score must score at least this (names it
                                       # writes: -21 to -26 where replaced on the held-out records; never learned: -86)
_CANDIDATE_NAMES = dict(CANDIDATES)


@dataclasses.dataclass(frozen=True)
class RhythmRevision:
    """One rhythm statement the measurements contradicted, and how the report was revised."""

    original: str                      # the model's words ("atrial fibrillation", "Irregularly irregular")
    original_finding: str              # CRITERIA key
    reason: str                        # why they are contradicted (the verdict's reason)
    method: str                        # "sentence": the model rewrote from the sentence's start; "name": the name
                                       # alone replaced (no rewritten sentence was free of contradictions)
    revised: str                       # the rhythm the revised text states in its place ("" where none)
    revised_finding: str | None
    token_index: int                   # where the revised ids leave the model's
    tried: tuple[dict, ...]            # per alternative: its first words or name, log-probability, what was wrong

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["tried"] = [dict(t) for t in self.tried]
        return out


class ScoringModel(Protocol):
    def continuation_ids(self, text: str) -> list[int]:
        """text -> ids as they continue a generated text (no BOS; SentencePiece's dummy prefix space)."""

    def piece(self, token: int) -> bytes:
        """The bytes of one id, with its leading space."""

    def next_logprobs(self, keep: int) -> np.ndarray:
        """log p(next id | prompt + the first `keep` generated ids), over the vocabulary."""

    def logprob(self, keep: int, candidate: list[int]) -> float:
        """log p(candidate | prompt + the first `keep` generated ids)."""

    def continue_after(self, keep: int, candidate: list[int], max_new_tokens: int) -> list[int]:
        """Greedy ids after prompt + the first `keep` generated ids + candidate (not including them)."""


@dataclasses.dataclass
class Revised:
    ids: list[int]                     # the generated ids, revised
    revisions: list[RhythmRevision]


def text_of(model: ScoringModel, ids: list[int]) -> tuple[str, list[int]]:
    """The text as a result shows it (the first word's dummy space gone, stripped) and, per id, the character
    offset in that text where it ends."""
    raw, ends = b"", []
    for t in ids:
        raw += model.piece(t)
        ends.append(len(raw.decode("utf-8", "ignore")))
    full = raw.decode("utf-8", "replace")
    lead = len(full) - len(full.lstrip())
    return full.strip(), [e - lead for e in ends]


def _contradicted(verdicts: list, evidence: bool = False) -> list:
    """Of a text's verdicts, the rhythm diagnoses (and with `evidence`, the statements of a rhythm's evidence) the
    measurements contradict, in text order."""
    kinds = RHYTHM_FINDINGS + (EVIDENCE_FINDINGS if evidence else ())
    return [v for v in verdicts if v.verdict == CONTRADICTED and v.finding in kinds]


def rhythm_contradicted(verdicts: list) -> bool:
    """Whether revise_rhythm would revise a text with these diagnosis verdicts (a Result's `diagnoses`)."""
    return bool(_contradicted(verdicts))


def _named(verdicts: list, from_char: int) -> list:
    """Of a text's verdicts, the rhythm names stated from character `from_char` on."""
    return [v for v in verdicts if v.finding in _CANDIDATE_NAMES and v.span[0] >= from_char]


def revise_rhythm(model: ScoringModel, ids: list[int], meas, *, device=None, sex: str | None = None,
                  max_new_tokens: int = 256, max_openers: int = MAX_OPENERS) -> Revised:
    """Revise the generated `ids` where a rhythm statement is contradicted (see the module): first by letting the
    model rewrite from the start of that statement's sentence, else by replacing the contradicted names."""
    text, ends = text_of(model, ids)
    verdicts = check_diagnoses(text, meas, device, sex=sex)
    bad = _contradicted(verdicts)
    if not bad:
        return Revised(ids, [])
    first = bad[0]
    # from the sentence of the first contradicted statement of the rhythm or of its evidence before it ("Irregularly
    # irregular rhythm ..., consistent with atrial fibrillation": the evidence, too, is the model's and wrong)
    at = _contradicted(verdicts, evidence=True)[0].span[0]
    sent_char = _sentence_start(text, at)
    s = _token_at(ends, sent_char)
    names_before = _named(verdicts, sent_char)                      # the original sentence on names a rhythm
    logp = model.next_logprobs(s)
    tried = []
    for tok in np.argsort(-logp)[:max_openers + 1]:
        tok = int(tok)
        if s < len(ids) and tok == ids[s]:
            continue                                              # the model's own first word: its text again
        rest = model.continue_after(s, [tok], max(0, max_new_tokens - s - 1))
        cand = ids[:s] + [tok] + rest
        ctext, _ = text_of(model, cand)
        cverdicts = check_diagnoses(ctext, meas, device, sex=sex)
        wrong = [v for v in _contradicted(cverdicts, evidence=True) if v.span[0] >= sent_char]
        named = _named(cverdicts, sent_char)
        tried.append({"first_words": ctext[sent_char:sent_char + 40], "logprob": round(float(logp[tok]), 3),
                      "contradicted": [v.statement for v in wrong], "names_rhythm": bool(named)})
        if not wrong and (named or not names_before):
            return Revised(cand, [RhythmRevision(first.statement, first.finding, first.reason, "sentence",
                                                 named[0].statement if named else "",
                                                 named[0].finding if named else None, s, tuple(tried))])
    return _replace_names(model, ids, meas, device, sex, max_new_tokens, tuple(tried))


def _sentence_start(text: str, at: int) -> int:
    """Where the sentence holding character `at` begins: after the last ". " or line break before it, else 0."""
    stop, line = text.rfind(". ", 0, at), text.rfind("\n", 0, at)
    return max(stop + 2 if stop >= 0 else 0, line + 1 if line >= 0 else 0)


def _token_at(ends: list[int], char: int) -> int:
    """The index of the id whose characters reach past `char` (the one a statement starting there begins in)."""
    return next((i for i, e in enumerate(ends) if e > char), len(ends))


def _replace_names(model, ids, meas, device, sex, max_new_tokens, tried_sentences) -> Revised:
    """Each contradicted rhythm name, first to last, replaced by the name the model scores highest there among
    those the measurements allow; the model goes on after it."""
    revisions: list[RhythmRevision] = []
    done_at: set[int] = set()
    for _ in range(MAX_REVISIONS):
        text, ends = text_of(model, ids)
        target = next((v for v in _contradicted(check_diagnoses(text, meas, device, sex=sex))
                       if v.finding in _CANDIDATE_NAMES and v.span[0] not in done_at), None)
        if target is None:
            break
        done_at.add(target.span[0])
        k = _token_at(ends, target.span[0])
        start_k = ends[k - 1] if k else 0
        lead = text[start_k:target.span[0]]
        allowed, tried = {}, list(tried_sentences)
        for finding, name in CANDIDATES:
            if finding == target.finding:
                continue
            verdict = next(iter(check_diagnoses(name, meas, device, sex=sex)), None)
            if verdict is not None and verdict.verdict == CONTRADICTED:
                tried.append({"name": name, "contradicted": [verdict.reason]})
                continue
            words = name[0].upper() + name[1:] if target.statement[:1].isupper() else name
            cand = _candidate_ids(model, lead, words, k == 0)
            if cand is not None:
                allowed[name] = (finding, words, cand)
        if not allowed:
            continue
        scores = {name: model.logprob(k, cand) for name, (_, _, cand) in allowed.items()}
        tried += [{"name": n, "logprob": round(sc, 3), "contradicted": []} for n, sc in scores.items()]
        best = max(scores, key=scores.get)
        if scores[best] < MIN_NAME_LOGPROB:
            continue
        finding, words, cand = allowed[best]
        rest = model.continue_after(k, cand, max(0, max_new_tokens - k - len(cand)))
        ids = ids[:k] + cand + rest
        revisions.append(RhythmRevision(target.statement, target.finding, target.reason, "name", words, finding, k,
                                        tuple(tried)))
    return Revised(ids, revisions)


def _candidate_ids(model: ScoringModel, lead: str, words: str, first: bool) -> list[int] | None:
    """The ids that write `lead + words` where the statement began, as the model would have written them; None
    when no tokenization reproduces those characters (the statement began inside a word)."""
    want = (lead + words).encode()
    for text in ((lead[1:] + words) if lead.startswith(" ") else None, lead + words):
        if text is None:
            continue
        ids = model.continuation_ids(text)
        got = b"".join(model.piece(t) for t in ids)
        if got == want or (first and got.lstrip(b" ") == want.lstrip(b" ")):
            return ids
    return None


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    return z - z.max() - np.log(np.exp(z - z.max()).sum())


def log_softmax_at(logits: np.ndarray, token: int) -> float:
    return float(log_softmax(logits)[token])


class LlamaScorer:
    """`ScoringModel` on a LlamaLLM whose KV holds the prompt (positions < pos) and the generated ids after it:
    each call cuts the KV back to the ids it keeps and feeds the rest (`held`: how many generated ids the KV is
    known to hold; the last of a generation that stopped at its limit was never fed)."""

    def __init__(self, llm, pos: int, last_prompt_id: int, generated: list[int]):
        self.llm, self.pos, self.last_prompt_id, self.generated = llm, pos, last_prompt_id, list(generated)
        self.held = max(0, len(generated) - 1)

    def continuation_ids(self, text: str) -> list[int]:
        return self.llm.tokenize(text, bos=False)

    def piece(self, token: int) -> bytes:
        return self.llm.piece(token)

    def _feed(self, keep: int, candidate: list[int], logits: str) -> tuple[int, int]:
        """KV = prompt + generated[:keep] + candidate; (next position, the logits row that predicts candidate[0])."""
        if keep == 0:
            start, before = self.pos - 1, [self.last_prompt_id]
        else:
            held = min(self.held, keep - 1)
            start, before = self.pos + held, self.generated[held:keep]
        self.llm.truncate(start)
        nxt = self.llm.eval_tokens(before + candidate, start, logits)
        self.held = keep
        return nxt, len(before) - 1

    def next_logprobs(self, keep: int) -> np.ndarray:
        self._feed(keep, [], "last")
        return log_softmax(self.llm.logits())

    def logprob(self, keep: int, candidate: list[int]) -> float:
        _, row = self._feed(keep, candidate, "all")
        return sum(log_softmax_at(self.llm.logits(row + i), t) for i, t in enumerate(candidate))

    def continue_after(self, keep: int, candidate: list[int], max_new_tokens: int) -> list[int]:
        from .llm import LlmTimings

        pos, _ = self._feed(keep, candidate, "last")
        rest = self.llm.generate(pos, max_new_tokens, LlmTimings()) if max_new_tokens > 0 else []
        self.generated = self.generated[:keep] + candidate + rest
        self.held = keep + len(candidate) + max(0, len(rest) - 1)
        return rest
