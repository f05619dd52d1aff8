"""The one assertion helper and the one failure-message format of normspec.

Every failure names the clause, the adapter, op, shape, dtype and device, the
worst element with observed vs expected and the bound, and how to reproduce it.
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
import numpy as np


class NonConformance(AssertionError):
    """An implementation under test disagrees with the clause `clause`; `context` says where."""

    def __init__(self, clause: str, message: str, context: "Context | None" = None, worst: tuple | None = None,
                 reproduce: str = ""):
        # worst: index of the worst element; reproduce: the snippet that ends the message
        self.clause, self.context, self.worst, self.reproduce = clause, context, worst, reproduce
        self.detail = message
        super().__init__(f"{clause} violated: {message}" + (f"\n  reproduce:\n{_indent(reproduce)}" if reproduce else ""))

    def with_evidence(self, line: str) -> "NonConformance":
        """The same failure with one more line of evidence, above the reproduction snippet."""
        return NonConformance(self.clause, f"{self.detail}\n  {line}", self.context, self.worst, self.reproduce)


@dataclass
class Context:
    """What a failure message says about where it happened."""

    adapter: str
    op: str
    dtype: str
    device: str
    shape: tuple
    case: object = None  # the normspec.cases.Case that failed, for the reproduction snippet
    # A law's other side: (the other Case, the index applied to its output), so that the
    # reproduction compares the two outputs as the law does instead of checking `case` alone.
    law: tuple | None = None

    def header(self, what: str) -> str:
        return f"{self.adapter} {self.op} {what}, input shape {self.shape}, {self.dtype}, {self.device}"

    def fail(self, clause: str, what: str, detail: str, worst: tuple | None = None):
        from normspec.failures import repro_snippet
        snippet = repro_snippet(self.adapter, self.case, self.device, law=self.law) if self.case is not None else (
            f"normspec check {self.adapter} --ops {self.op} --dtypes {self.dtype} --devices {self.device}")
        raise NonConformance(clause, f"{self.header(what)}\n  {detail}", self, worst, reproduce=snippet)


CALL_TIMEOUT_S = 60.0  # set by the plugin's --call-timeout
# Cumulative count and seconds of calls into implementations (for `normspec bench`).
CALLS = {"count": 0, "seconds": 0.0}
# Adapters that timed out in the current test: later calls fail at once, so that
# Hypothesis's shrinking does not wait out the timeout again and again.
TIMED_OUT: set = set()


class CallTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CallTimeout()


@contextmanager
def adapter_call(context: Context, what: str, clause: str, *, unchanged: dict | None = None):
    """A call into the implementation under test. Raising on a valid input, or taking longer
    than CALL_TIMEOUT_S (interrupted where Python can be: a hang inside native code is left
    to the test-level timeout of `normspec check`), violates the op's clause `clause`.
    `unchanged` names the arrays the call is given that it must not modify (GEN-6); any it
    modified are restored, so that the reference and the reproduction see the given values."""
    given = {name: array.copy() for name, array in (unchanged or {}).items() if isinstance(array, np.ndarray)}
    modified = []
    if context.adapter in TIMED_OUT:
        context.fail(clause, what, f"not called again: an earlier call in this test did not return within "
                                   f"{CALL_TIMEOUT_S:g} s (--call-timeout)")
    alarm = CALL_TIMEOUT_S > 0 and threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if alarm:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, CALL_TIMEOUT_S)
    start = time.perf_counter()
    try:
        yield
    except NonConformance:
        raise
    except CallTimeout:
        TIMED_OUT.add(context.adapter)
        context.fail(clause, what, f"did not return within {CALL_TIMEOUT_S:g} s (--call-timeout)")
    except Exception as error:
        message = " ".join(str(error).split())[:500]
        context.fail(clause, what, f"raised {type(error).__name__} on a valid input: {message}")
    finally:
        CALLS["count"] += 1
        CALLS["seconds"] += time.perf_counter() - start
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


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def check_array(observed, *, shape: tuple, dtype, context: Context, what: str = "output",
                shape_clause: str = "GEN-3", dtype_clause: str = "NUM-2.2") -> np.ndarray:
    """A NumPy array of the expected shape (GEN-3; GRAD-1 for gradients) and dtype
    (NUM-2.2; GRAD-8.2 for gradients)."""
    if observed is None:
        context.fail(shape_clause, what, "returned None instead of an array")
    if not isinstance(observed, np.ndarray):
        context.fail(shape_clause, what, f"returned {type(observed).__name__}, not a NumPy array")
    if observed.shape != tuple(shape):
        context.fail(shape_clause, what, f"has shape {observed.shape}, expected {tuple(shape)}")
    if observed.dtype != np.dtype(dtype):
        context.fail(dtype_clause, what, f"has dtype {observed.dtype}, expected the input dtype {np.dtype(dtype)}")
    return observed


def assert_within(observed, expected, bound, *, clause: str, context: Context, what: str = "output",
                  dtype=None, nonfinite_clause: str | None = None, nan_allowed=None,
                  nonfinite_allowed=None, propagation_clause: str | None = None) -> None:
    """Every element of `observed` is within `bound` of `expected` (float64 arrays of one shape).

    Where `expected` is NaN, `observed` must be NaN; where it is infinite, equal (NUM-4).
    Anywhere else `observed` must be finite (NUM-3.1, NUM-1.3), unless it equals the
    exact value correctly rounded to `dtype` (the output dtype), which is always allowed:
    a value beyond the dtype's range rounds to infinity.

    A failure cites `clause`; one where a finite value was expected and a NaN or Inf came
    back cites `nonfinite_clause` (default `clause`), and one where NaN or Inf was
    expected cites NUM-4.1 or NUM-4.2 (or `propagation_clause`, e.g. NUM-4.3 for non-finite
    parameters). Where the boolean mask `nan_allowed` is set, NaN is accepted too (a rule
    such as NUM-4.2's "beta or NaN"); where `nonfinite_allowed` is set, NaN or either
    infinity (NUM-4.3's infinite gamma times a normalized value that may round to 0).
    """
    observed = np.asarray(observed, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), expected.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(observed - expected)
        nan_expected = np.isnan(expected)
        inf_expected = np.isinf(expected)
        bad = np.where(nan_expected, ~np.isnan(observed),
                       np.where(inf_expected, observed != expected, ~(error <= bound)))
        if dtype is not None and bad.any():
            bad &= observed != expected.astype(dtype).astype(np.float64)
        if nan_allowed is not None:
            bad &= ~(nan_allowed & np.isnan(observed))
        if nonfinite_allowed is not None:
            bad &= ~(nonfinite_allowed & ~np.isfinite(observed))
    if not bad.any():
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.where(bad, np.nan_to_num(error / np.where(bound > 0, bound, np.inf), nan=np.inf, posinf=np.inf), -1)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), expected.shape))
    o, e, b = float(observed[index]), float(expected[index]), float(bound[index])
    if np.isnan(e) or np.isinf(e) or not np.isfinite(o):
        detail = f"worst element {list(index)}: observed {o!r}, expected {e!r}"
        clause = ((nonfinite_clause or clause) if np.isfinite(e)
                  else propagation_clause or ("NUM-4.1" if np.isnan(e) else "NUM-4.2"))
    else:
        detail = (f"worst element {list(index)}: observed {o:.9g}, expected {e:.9g} "
                  f"(|error| {abs(o - e):.3g} > bound {b:.3g}, {abs(o - e) / b if b else np.inf:.3g}x the bound)")
    detail += f"\n  elements outside the bound: {int(bad.sum())} of {bad.size}"
    context.fail(clause, what, detail, worst=index)

