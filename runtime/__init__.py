"""gem-edge runtime: interpret an ECG file offline from a bundle. numpy, ONNX Runtime, llama.cpp; never torch.

    from gem_runtime import Interpreter
    with Interpreter.load() as gem:
        result = gem.interpret("ecg.hea")          # Result: text, measurements, grounding, timings
        answer = gem.ask(result, "Is the QT prolonged?")

    measure_ecg(signal, fs=500)                    # the deterministic measurements alone, no model

The names are imported lazily (gem_train imports the constants without pulling in llama.cpp); type checkers
see them through the TYPE_CHECKING imports.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (BackendUnavailableError, BundleError, CheckpointError, ConfigError, ContextOverflowError,
                     ConversationNotFound, EcgReadError, GemEdgeError, GenerationStopped, LlmError, ModelLoadError)

if TYPE_CHECKING:
    from .conversation import Answer
    from .interpreter import Interpreter
    from .result import Result
    from .measure import Measurements, measure_ecg
    from .readers import EcgRecord, read_ecg
    from .tuning import LoadPlan

__all__ = ["Interpreter", "Result", "Answer", "LoadPlan", "read_ecg", "EcgRecord", "measure_ecg", "Measurements",
           "GemEdgeError", "EcgReadError", "BundleError", "CheckpointError", "ConfigError", "BackendUnavailableError",
           "LlmError", "ModelLoadError", "ContextOverflowError", "ConversationNotFound", "GenerationStopped"]

_LAZY = {"Interpreter": "interpreter", "Result": "result", "Answer": "conversation", "LoadPlan": "tuning",
         "read_ecg": "readers", "EcgRecord": "readers", "measure_ecg": "measure", "Measurements": "measure"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
