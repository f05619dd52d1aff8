"""The comparison of observed with expected values, and the one failure-message format.

Every failure names the clause, the adapter, op, shape, dtype and device, the
worst element with observed vs expected and the bound, and how to reproduce it.
"""
from __future__ import annotations

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
        dtypes = (f"{self.dtype} with {self.case.param_dtype} parameters"
                  if getattr(self.case, "mixed", False) else self.dtype)
        return f"{self.adapter} {self.op} {what}, input shape {self.shape}, {dtypes}, {self.device}"

    def fail(self, clause: str, what: str, detail: str, worst: tuple | None = None):
        from normspec.failures import repro_snippet
        snippet = repro_snippet(self.adapter, self.case, self.device, law=self.law) if self.case is not None else (
            f"normspec check {self.adapter} --ops {self.op} --dtypes {self.dtype} --devices {self.device}")
        raise NonConformance(clause, f"{self.header(what)}\n  {detail}", self, worst, reproduce=snippet)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def check_array(observed, *, shape: tuple, dtype, context: Context, what: str = "output",
                shape_clause: str = "GEN-3", dtype_clause: str = "NUM-2.2",
                dtype_source: str = "the input dtype") -> np.ndarray:
    """A NumPy array of the expected shape (GEN-3; GRAD-1 for gradients) and dtype
    (NUM-2.2; GRAD-8.2 for gradients); `dtype_source` says whose dtype that is."""
    if observed is None:
        context.fail(shape_clause, what, "returned None instead of an array")
    if not isinstance(observed, np.ndarray):
        context.fail(shape_clause, what, f"returned {type(observed).__name__}, not a NumPy array")
    if observed.shape != tuple(shape):
        context.fail(shape_clause, what, f"has shape {observed.shape}, expected {tuple(shape)}")
    if observed.dtype != np.dtype(dtype):
        context.fail(dtype_clause, what, f"has dtype {observed.dtype}, expected {dtype_source} {np.dtype(dtype)}")
    return observed


@dataclass(frozen=True)
class ClauseRouting:
    """Which clause a failed comparison cites, by what went wrong.

    value: an element outside its bound. nonfinite: a NaN or Inf where a finite value was
    due (default `value`). propagation: a wrong value where NaN or Inf was due (default
    NUM-4.1 for NaN, NUM-4.2 for Inf; NUM-4.3 for non-finite parameters, say).
    """

    value: str
    nonfinite: str | None = None
    propagation: str | None = None

    def cited(self, expected: float, observed_finite: bool) -> str:
        """The clause for a failing element whose expected value is `expected`."""
        if np.isfinite(expected):
            return self.value if observed_finite else (self.nonfinite or self.value)
        return self.propagation or ("NUM-4.1" if np.isnan(expected) else "NUM-4.2")


# In a mixed-precision call (NUM-2.3) an output outside NUM-1.1's bound, or not finite where it should be,
# is cited as NUM-2.3, which states the bound for such calls.
MIXED_PRECISION_ROUTING = ClauseRouting("NUM-2.3", nonfinite="NUM-2.3")


def routing(clause) -> ClauseRouting:
    """A ClauseRouting from a clause ID (every kind of failure cites it, NUM-4 aside) or itself."""
    return clause if isinstance(clause, ClauseRouting) else ClauseRouting(clause)


def assert_within(observed, expected, bound, *, clause, context: Context, what: str = "output",
                  dtype=None, nan_allowed=None, nonfinite_allowed=None) -> None:
    """Every element of `observed` is within `bound` of `expected` (float64 arrays of one shape).

    Where `expected` is NaN, `observed` must be NaN; where it is infinite, equal (NUM-4).
    Anywhere else `observed` must be finite (NUM-3.1, NUM-1.3), unless it equals the
    exact value correctly rounded to `dtype` (the output dtype), which is always allowed:
    a value beyond the dtype's range rounds to infinity.

    `clause` is a clause ID or a ClauseRouting, which says what a failure cites. Where the
    boolean mask `nan_allowed` is set, NaN is accepted too (a rule such as NUM-4.2's "beta
    or NaN"); where `nonfinite_allowed` is set, NaN or either infinity (NUM-4.3's infinite
    gamma times a normalized value that may round to 0).
    """
    route = routing(clause)
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
    cited = route.cited(e, bool(np.isfinite(o)))
    if np.isnan(e) or np.isinf(e) or not np.isfinite(o):
        detail = f"worst element {list(index)}: observed {o!r}, expected {e!r}"
    else:
        detail = (f"worst element {list(index)}: observed {o:.9g}, expected {e:.9g} "
                  f"(|error| {abs(o - e):.3g} > bound {b:.3g}, {abs(o - e) / b if b else np.inf:.3g}x the bound)")
    detail += f"\n  elements outside the bound: {int(bad.sum())} of {bad.size}"
    context.fail(cited, what, detail, worst=index)
