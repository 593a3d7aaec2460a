"""What `Interpreter.interpret` returns: the report, its checks against the measurements, and how it was made."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .diagnosis import DiagnosisVerdict
from .grounding import DeviceComparison, GroundingItem
from .measure import Measurements
from .readers import DeviceReport
from .revise import RhythmRevision
from .speculate import SpeculationStats
from .timings import Timings


@dataclass(frozen=True)
class Backends:
    ecg_encoder: str
    image_encoder: str
    llm: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Result:
    text: str
    source: str
    new_tokens: int
    prompt_positions: int
    timings: Timings
    decode_tok_s: float
    backends: Backends
    bundle_id: str
    quant: str
    threads: int
    measurements: Measurements                # deterministic, from the signal (gem_runtime.measure)
    grounding: list[GroundingItem]            # every number the text states, checked against them
    diagnoses: list[DiagnosisVerdict] = field(default_factory=list)   # every finding it states, against its criteria
    warnings: list[str] = field(default_factory=list)
    prefix_cached: bool = False
    token_ids: list[int] = field(default_factory=list)     # the generated ids (parity checks)
    device: DeviceReport | None = None        # the cart's own measurements and statements, from the file
    device_comparison: list[DeviceComparison] = field(default_factory=list)   # ours against the cart's
    ecg_id: str = ""                          # for follow-up questions: Interpreter.ask(result, question)
    speculation: SpeculationStats | None = None   # drafted and kept tokens, when decoding speculated
    lead_issues: dict[str, str] = field(default_factory=dict)   # leads kept with a problem (flat, saturated, off)
    sex: str | None = None                    # the patient's, "F"/"M" as the file states it (the diagnoses' limits)
    revisions: list[RhythmRevision] = field(default_factory=list)   # rhythm statements revised (revise=True)
    model_text: str | None = None             # the model's own text, where a revision changed it

    def to_dict(self) -> dict:
        """The object `gem-run --json` prints."""
        return {"text": self.text, "source": self.source, "new_tokens": self.new_tokens,
                "prompt_positions": self.prompt_positions, "timings_ms": self.timings.to_dict(),
                "decode_tok_s": self.decode_tok_s, "backends": dataclasses.asdict(self.backends),
                "bundle_id": self.bundle_id, "quant": self.quant, "threads": self.threads,
                "warnings": list(self.warnings), "prefix_cached": self.prefix_cached,
                "token_ids": list(self.token_ids), "measurements": self.measurements.to_dict(),
                "grounding": [g.to_dict() for g in self.grounding],
                "diagnoses": [v.to_dict() for v in self.diagnoses], "lead_issues": dict(self.lead_issues),
                "sex": self.sex,
                "device": None if self.device is None else self.device.to_dict(),
                "device_comparison": [c.to_dict() for c in self.device_comparison],
                **({"revisions": [r.to_dict() for r in self.revisions], "model_text": self.model_text}
                   if self.revisions else {}),
                **({"speculation": self.speculation.to_dict()} if self.speculation else {})}
