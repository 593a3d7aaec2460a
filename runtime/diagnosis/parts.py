"""The pieces every check is made of: a `Part` (one criterion's verdict and reason), an `Outcome` (a finding's
verdict, reason and the evidence it read), threshold tests with a margin, and how parts combine."""

from __future__ import annotations

from typing import NamedTuple

from .criteria import CONTRADICTED, NOT_CHECKABLE, SUPPORTED


class Part(NamedTuple):
    verdict: str
    reason: str


class Outcome(NamedTuple):
    verdict: str
    reason: str
    keys: tuple[str, ...]                 # the Evidence fields it read
    extra: dict                           # computed values (voltages, morphology)


def combine(parts: list[Part]) -> tuple[str, str]:
    """Contradicted if any part is, supported if all are, else not checkable; the reasons that decided."""
    for verdict in (CONTRADICTED, NOT_CHECKABLE):
        hit = [p.reason for p in parts if p.verdict == verdict]
        if hit:
            return verdict, "; ".join(hit)
    return SUPPORTED, "; ".join(p.reason for p in parts)


def limit_text(value: float, limit: float) -> str:
    """A value as a reason shows it: whole units, or one decimal where rounding would reach the limit."""
    return f"{value:.1f}" if round(value) == round(limit) else f"{value:.0f}"


def above(value, limit, margin, what, unit, strict=True) -> Part:
    """value > limit (>= where not strict): supported; at or below limit - margin: contradicted; between: borderline."""
    if value is None:
        return Part(NOT_CHECKABLE, f"{what} not measured")
    shown = f"{what} {limit_text(value, limit)} {unit}"
    if value > limit or (not strict and value >= limit):
        return Part(SUPPORTED, f"{shown} {'>' if strict else '>='} {limit:.0f}")
    if value <= limit - margin:
        return Part(CONTRADICTED, f"{shown}, not {'>' if strict else '>='} {limit:.0f}")
    return Part(NOT_CHECKABLE, f"{shown} is within {margin:.0f} {unit} of the {limit:.0f} {unit} limit")


def below(value, limit, margin, what, unit) -> Part:
    if value is None:
        return Part(NOT_CHECKABLE, f"{what} not measured")
    shown = f"{what} {limit_text(value, limit)} {unit}"
    if value < limit:
        return Part(SUPPORTED, f"{shown} < {limit:.0f}")
    if value >= limit + margin:
        return Part(CONTRADICTED, f"{shown}, not < {limit:.0f}")
    return Part(NOT_CHECKABLE, f"{shown} is within {margin:.0f} {unit} of the {limit:.0f} {unit} limit")


# --- rhythm ------------------------------------------------------------------------------------------------------
