"""Typed errors. Every user mistake ends in one of these, printed as one line, exit code 2."""


class GemEdgeError(Exception):
    """Base of all gem-edge errors that are the user's input, not our bug."""


class EcgReadError(GemEdgeError, ValueError):
    """An ECG file that cannot be read or is not a usable 12-lead ECG."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


class BundleError(GemEdgeError):
    """A bundle that is missing, incomplete, corrupted or of an unsupported version."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


class CheckpointError(GemEdgeError):
    """A checkpoint whose files, names or shapes do not make a GEM model."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


class BackendUnavailableError(GemEdgeError):
    """A backend was asked for explicitly and is not available here (never a silent fallback)."""
