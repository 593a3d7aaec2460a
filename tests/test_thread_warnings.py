"""Warnings caught per thread (gem_runtime.thread_warnings): with one thread reading ECGs and another measuring
and warning at once, as the service's and the listener's threads do, another thread's warning landed in a read's
warnings (which its report carries), and the filter "always" stayed installed after both had finished."""
import threading
import time
import warnings

import pytest

from gem_runtime.measure import measure_ecg
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg
from gem_runtime.thread_warnings import caught_warnings, raise_first


def test_a_read_keeps_only_its_own_warnings_and_leaves_the_filters_as_they_were(shared_data):
    muse = shared_data / "real" / "muse" / "example2.xml"            # a read that warns (leads derived)
    signal = preprocess_ecg(read_ecg(muse))[0]
    filters, leaked, reads = list(warnings.filters), [], []
    stop = time.monotonic() + 4

    def reader():
        while time.monotonic() < stop:
            record = read_ecg(muse)
            reads.append(record.warnings)
            leaked.extend(w for w in record.warnings if "OTHER-PATIENT" in w)

    def other():
        while time.monotonic() < stop:
            warnings.warn("OTHER-PATIENT 123", UserWarning)
            measure_ecg(signal, 500.0)

    threads = [threading.Thread(target=reader), threading.Thread(target=other)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)                 # the other thread's, shown: not this test's
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert warnings.filters[1:] == filters                      # ours, then the filters as they were
    assert len(reads) > 5 and not leaked, leaked[:1]
    assert all(any("derived III" in w for w in ws) for ws in reads)


def test_a_caught_warning_is_raised_after_the_call_where_the_filter_error_raised_it_in_it():
    with caught_warnings() as caught:
        warnings.warn("late", UserWarning)
        warnings.warn("not this one", RuntimeWarning)
    assert [str(w.message) for w in caught] == ["late", "not this one"]
    with pytest.raises(UserWarning, match="late"):
        raise_first(caught, UserWarning)
    raise_first(caught, DeprecationWarning)                          # none of it: nothing raised
