"""Warnings caught per thread, for code that runs on several threads at once (the service, the DICOM listener).

Python's warnings filters and its catch_warnings are process-wide (before 3.14). Two threads inside
catch_warnings at once restore the filters out of order and leave one's filter set for good, and a capture
records every thread's warnings. Measured here: with one thread reading ECGs and another measuring and warning,
the filter "always" stayed installed after both had finished, and the other thread's warning text landed in a
read's warnings, which that ECG's report carries. So our code never changes the filters by itself: it catches
this thread's warnings here and decides on them after (raise, drop or keep), one thread at a time; another
thread's warning meanwhile is shown as the default filters would show it."""
from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Iterator

_LOCK = threading.RLock()
# shown for another thread while a capture holds the filters: Python's default filters ignore these
_IGNORED_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@contextmanager
def caught_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning this thread raises while inside (each occurrence), as a list filled in place."""
    owner, caught = threading.get_ident(), []
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("always")
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if threading.get_ident() == owner:
                caught.append(warnings.WarningMessage(message, category, filename, lineno, file, line))
            elif not issubclass(category, _IGNORED_BY_DEFAULT):
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield caught


def raise_first(caught: list[warnings.WarningMessage], category: type[Warning]) -> None:
    """The first caught warning of `category`, raised (what the filter "error" did, decided after the call)."""
    for w in caught:
        if issubclass(w.category, category):
            raise w.message if isinstance(w.message, Warning) else category(str(w.message))
