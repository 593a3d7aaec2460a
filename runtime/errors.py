"""Typed errors. Every user mistake ends in one of these, printed as one line with exit code 2 (see cli_errors).

Anything else that escapes is a bug in gem-edge and keeps its traceback.
"""


def one_line(text: object) -> str:
    """Any text (or an exception) as one line: newlines, tabs and runs of spaces become one space, control
    characters are dropped, so no file, client or peer can split or forge a log line. An exception with no
    message gives its class name."""
    s = " ".join(str(text).split())
    s = "".join(ch if ch.isprintable() else "?" for ch in s)
    if not s and isinstance(text, BaseException):
        return type(text).__name__
    return s


class GemEdgeError(Exception):
    """Base of all gem-edge errors that are the user's input, data or environment, not our bug."""


class _PathError(GemEdgeError):
    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


class EcgReadError(_PathError, ValueError):
    """An ECG file that cannot be read or is not a usable 12-lead ECG."""


class BundleError(_PathError):
    """A bundle that is missing, incomplete, corrupted or of an unsupported version."""


class CheckpointError(_PathError):
    """A checkpoint whose files, names or shapes do not make a GEM model."""


class ConfigError(GemEdgeError, ValueError):
    """A model config (a preset, a checkpoint's config.json, a tokenizer) that does not make a GEM model."""


class BackendUnavailableError(GemEdgeError):
    """A backend was asked for explicitly and is not available here (never a silent fallback)."""


class LlmError(GemEdgeError):
    """llama.cpp refused to run a batch (its return code is in the message)."""


class ModelLoadError(LlmError, _PathError):
    """llama.cpp could not load a GGUF file or create a context for it."""

    def __init__(self, path, problem: str):
        _PathError.__init__(self, path, problem)


class ContextOverflowError(LlmError):
    """A prompt or generation that does not fit the context window (n_ctx)."""


class ConversationNotFound(GemEdgeError, KeyError):
    """A follow-up for an ECG whose state is not kept (never seen, or evicted to bound memory)."""

    def __str__(self):
        return str(self.args[0]) if self.args else "conversation not found"


class GenerationStopped(GemEdgeError):
    """Generation stopped on purpose: the caller went away or its time ran out (`reason`)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NoUsableSignalError(GemEdgeError, ValueError):
    """An ECG without usable signal (leads off, flat, saturated, pure noise): nothing can be measured from it.
    Raised by `Measurements.require_signal`; `measure_ecg` itself returns every value None with the reason."""
