"""The call harness: every call into an implementation under test goes through
`adapter_call`, which turns an exception or a timeout into a NonConformance, counts the
call, and enforces GEN-6 (the arrays a call is given come back unchanged)."""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

import numpy as np

from normspec.compare import Context, NonConformance
from normspec.run import CURRENT


class CallTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CallTimeout()


@contextmanager
def adapter_call(context: Context, what: str, clause: str, *, unchanged: dict | None = None):
    """A call into the implementation under test. Raising on a valid input, or taking longer
    than the run's call timeout (interrupted where Python can be: a hang inside native code is
    left to the test-level timeout of `normspec check`), violates the op's clause `clause`.
    `unchanged` names the arrays the call is given that it must not modify (GEN-6); any it
    modified are restored, so that the reference and the reproduction see the given values."""
    settings, counters = CURRENT.settings, CURRENT.counters
    timeout = settings.call_timeout_s
    given = {name: array.copy() for name, array in (unchanged or {}).items() if isinstance(array, np.ndarray)}
    modified = []
    if context.adapter in counters.timed_out:
        context.fail(clause, what, f"not called again: an earlier call in this test did not return within "
                                   f"{timeout:g} s (--call-timeout)")
    alarm = timeout > 0 and threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if alarm:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    start = time.perf_counter()
    try:
        yield
    except NonConformance:
        raise
    except CallTimeout:
        counters.timed_out.add(context.adapter)
        context.fail(clause, what, f"did not return within {timeout:g} s (--call-timeout)")
    except Exception as error:
        message = " ".join(str(error).split())[:500]
        context.fail(clause, what, f"raised {type(error).__name__} on a valid input: {message}")
    finally:
        counters.calls += 1
        counters.call_seconds += time.perf_counter() - start
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        for name, before in given.items():
            change = _restore(unchanged[name], before)
            if change:
                modified.append(f"{name}: {change}")
    if modified:
        context.fail("GEN-6", what, "modified the arrays it was given (shown as given in the reproduction):\n  "
                     + "\n  ".join(modified))


def _restore(array: np.ndarray, before: np.ndarray) -> str:
    """How `array` differs, bit for bit, from its copy `before` ("" if not at all); restores it."""
    bits = f"u{before.dtype.itemsize}"
    differs = array.view(bits) != before.view(bits)
    if not differs.any():
        return ""
    index = tuple(int(i) for i in np.argwhere(differs)[0])
    change = (f"{int(differs.sum())} of {differs.size} elements changed; element {list(index)} was "
              f"{float(before[index])!r}, now {float(array[index])!r}")
    np.copyto(array, before)
    return change
