"""The fitted scalers' driver (spec/scalers.md): their case, its Hypothesis strategy, fitting an
adapter's Scaler chunk by chunk through the call harness, the reference fit under the adapter's
conventions, and the checks of the fitted statistics (SCALE-7.1) and of the transform and its
inverse (SCALE-7.2, SCALE-7.3) that the conformance tests run.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from hypothesis import strategies as st

from normspec import tolerance
from normspec.compare import Context, NonConformance, assert_within, check_array
from normspec.dtypes import numpy_dtype
from normspec.failures import array_source
from normspec.harness import adapter_call
from normspec.registry import SCALERS
from normspec.run import CURRENT
from normspec.strategies import SEEDS, fill

# The value families of normspec.strategies that mean something for data (each feature is one
# "slice"): spread_near_eps gives a small spread at an offset, constant_slices constant features.
FAMILIES = ("well_conditioned", "dyadic_grid", "exact_statistics", "large_offset", "spread_near_eps",
            "constant_slices")
SAMPLES = (1, 2, 3, 5, 8, 17, 33, 70)  # n: one sample, short, odd, and longer than 64
FEATURES = (1, 2, 3, 5)
FEATURE_RANGES = ((0.0, 1.0), (-1.0, 1.0), (2.0, 5.0), (-3.5, -0.25), (0.1, 0.7))


@dataclass
class ScalerCase:
    """One scaler check: the chunks fitted one after the other, the options (ScalerInfo.options),
    and new data to transform."""

    op: str
    dtype: str
    chunks: list
    options: dict = field(default_factory=dict)
    new: np.ndarray | None = None
    family: str = ""

    @property
    def data(self) -> np.ndarray:
        """The concatenation the chunks must fit as (SCALE-2.1)."""
        return np.concatenate(self.chunks, axis=0)

    @property
    def shape(self) -> tuple:
        return self.data.shape


def split(data: np.ndarray, cuts) -> list:
    """`data` cut into chunks before the sorted row indices `cuts` (each chunk non-empty)."""
    return np.split(data, sorted(set(int(c) for c in cuts if 0 < c < data.shape[0])))


OPTION_VALUES = {"with_mean": (False, True), "with_std": (False, True), "feature_range": FEATURE_RANGES,
                 "clip": (False, True)}


@st.composite
def scaler_cases(draw, *, op: str, dtype: str, families=FAMILIES, min_samples: int = 1, chunked: bool = True,
                 options: dict | None = None):
    """A ScalerCase: n samples and F features, values of a drawn family (normspec.strategies.fill,
    each feature a slice), a drawn chunking, options drawn from `options` (name -> the values an
    adapter supports, Capabilities.scaler_options; others from OPTION_VALUES), and new data from
    the same family."""
    if op not in SCALERS:
        raise ValueError(f"op={op!r} is not a scaler; pass one of {sorted(SCALERS)}")
    CURRENT.counters.cases_drawn += 1
    np_dtype = numpy_dtype(dtype)
    n = draw(st.sampled_from([s for s in SAMPLES if s >= min_samples]), label="samples")
    features = draw(st.sampled_from(FEATURES), label="features")
    family = draw(st.sampled_from(families), label="family")
    rng = np.random.default_rng(draw(SEEDS, label="seed"))
    ids = np.broadcast_to(np.arange(features), (n, features))
    data = fill(rng, family, (n, features), ids, np_dtype, 1e-5)
    new = fill(rng, family, (max(n, 3), features), np.broadcast_to(np.arange(features), (max(n, 3), features)),
               np_dtype, 1e-5)
    chunks = draw(st.integers(1, min(n, 6)), label="chunks") if chunked else 1
    cuts = rng.choice(np.arange(1, n), size=chunks - 1, replace=False) if chunks > 1 else []
    supported = options or {}
    drawn = {name: draw(st.sampled_from(supported.get(name, OPTION_VALUES[name])), label=name)
             for name in SCALERS[op].options}
    return ScalerCase(op=op, dtype=dtype, chunks=split(data, cuts), options=drawn, new=new, family=family)


class ScalerContext(Context):
    """A Context whose reproduction fits and transforms the case's arrays on the adapter."""

    def __init__(self, adapter_id: str, case: ScalerCase, device: str):
        super().__init__(adapter_id, case.op, case.dtype, device, case.shape)
        self.scaler_case = case

    def fail(self, clause: str, what: str, detail: str, worst: tuple | None = None):
        raise NonConformance(clause, f"{self.header(what)}\n  {detail}", self, worst,
                             reproduce=reproduction(self.adapter, self.scaler_case, self.device))


def reproduction(adapter_id: str, case: ScalerCase, device: str) -> str:
    """Python that fits the case's chunks on the adapter and prints the statistics and outputs next
    to the reference's (the arrays inline for small cases, else the `normspec check` command)."""
    from normspec.adapters import LOADED
    if sum(c.size for c in case.chunks) + (0 if case.new is None else case.new.size) > 128:
        return (f"normspec check {LOADED.get(adapter_id, adapter_id)} --ops {case.op} --dtypes {case.dtype} "
                f"--devices {device}")
    options = ", ".join(f"{k}={v!r}" for k, v in case.options.items())
    new = case.new if case.new is not None else case.data
    return ("import numpy as np\nfrom normspec.adapters import load_adapter\nfrom normspec.scalers import reference_fit\n"
            f"adapter = load_adapter({LOADED.get(adapter_id, adapter_id)!r})\n"
            f"chunks = [{', '.join(array_source(c) for c in case.chunks)}]\n"
            f"new = {array_source(new)}\n"
            f"scaler = adapter.{case.op}({options}, device={device!r})\n"
            "for chunk in chunks:\n    scaler.partial_fit(chunk)\n"
            "print('statistics:', scaler.statistics())\nprint('transform(new):', scaler.transform(new))\n"
            f"fitted = reference_fit(adapter, chunks, {case.op!r}, {case.options!r})\n"
            "print('exact transform(new):', fitted.transform(new, exact=True))")


def reference_fit(adapter, chunks, op: str, options: dict):
    """The reference fitted on `chunks` under the adapter's conventions (STD-2.2's d, SCALE-5)."""
    conventions = adapter.conventions
    if op == "standard_scaler":
        return SCALERS[op].reference(chunks, ddof=conventions.scaler_ddof, nan=conventions.scaler_nan, **options)
    return SCALERS[op].reference(chunks, nan=conventions.scaler_nan, **options)


def fit(adapter, case: ScalerCase, device: str, context: Context, chunks=None):
    """The adapter's Scaler for `case`, partial_fit on each chunk (default the case's) in order."""
    row = SCALERS[case.op]
    with adapter_call(context, f"{row.method}({case.options})", row.defining_clause):
        scaler = getattr(adapter, row.method)(**case.options, device=device)
    for index, chunk in enumerate(case.chunks if chunks is None else chunks):
        with adapter_call(context, f"partial_fit of chunk {index}", "SCALE-2", unchanged={"chunk": chunk}):
            scaler.partial_fit(chunk)
    return scaler


def transform(scaler, x: np.ndarray, context: Context, *, inverse: bool = False) -> np.ndarray:
    """The scaler's transform (or inverse) of x, checked for shape and dtype (SCALE-6)."""
    name = "inverse_transform" if inverse else "transform"
    with adapter_call(context, name, "SCALE-4" if inverse else "SCALE-2", unchanged={"x": x}):
        observed = getattr(scaler, name)(x)
    return check_array(observed, shape=x.shape, dtype=x.dtype, context=context, what=name,
                       shape_clause="SCALE-6", dtype_clause="SCALE-6")


def statistics(scaler, context: Context) -> dict:
    """The scaler's statistics() as NumPy arrays of shape (F,) (None where it keeps none)."""
    with adapter_call(context, "statistics()", "SCALE-2"):
        values = scaler.statistics()
    checked = {}
    for name, value in values.items():
        if value is not None:
            value = np.asarray(value)
            if value.shape != (context.shape[1],) or value.dtype.kind != "f":
                context.fail("SCALE-6", "statistics()", f"{name} has shape {value.shape} and dtype {value.dtype}; "
                                                        f"expected ({context.shape[1]},), floating")
        checked[name] = value
    return checked


def check_statistics(case: ScalerCase, fitted, observed: dict, context: Context) -> None:
    """The fitted statistics (as `statistics` returns them) within SCALE-7.1 of the exact ones of
    the concatenation (`fitted`, the reference); min-max extremes exactly; the divisor of a
    constant feature 1 (SCALE-3.1). A statistic kept in a narrower dtype than the data's breaks
    SCALE-6."""
    u = tolerance.compute_roundoff(case.dtype)
    for name, value in observed.items():
        if value is not None and value.dtype.itemsize < np.dtype(case.dtype).itemsize:
            context.fail("SCALE-6", "statistics()", f"{name} is kept in {value.dtype}, narrower than the data's "
                                                    f"{np.dtype(case.dtype)}")
    dtypes = {name: value.dtype for name, value in observed.items() if value is not None}
    observed = {name: None if value is None else value.astype(np.float64) for name, value in observed.items()}
    if case.op == "standard_scaler":
        mean_error, variance_error = tolerance.fitted_statistic_errors(fitted, input_dtype=case.dtype)
        if observed.get("mean") is not None:
            exact = fitted.mean + fitted.mean_residual
            # The difference from the exact mean is 0 within the bound; NaN where the exact mean is (SCALE-5).
            difference = (observed["mean"] - fitted.mean) - fitted.mean_residual
            assert_within(difference, np.where(np.isnan(exact), np.nan, 0.0),
                          tolerance.statistic_bound(exact, mean_error, dtypes["mean"]), clause="SCALE-7.1",
                          context=context, what="fitted mean (STD-2.1), minus the exact mean")
        if observed.get("variance") is not None:
            dtype = dtypes["variance"]
            assert_within(observed["variance"], fitted.variance,
                          tolerance.statistic_bound(fitted.variance, variance_error, dtype), clause="SCALE-7.1",
                          context=context, what=f"fitted variance (STD-2.2, d = {fitted.ddof})")
        scale = observed.get("scale")
        if scale is not None:
            ones = fitted.constant | (not fitted.with_std)
            assert_within(np.where(ones, scale, 1.0), np.ones_like(scale), 0.0, clause="SCALE-3.1", context=context,
                          what="divisor (scale) of the constant features and of with_std=False (STD-3)")
        return
    for name, exact in (("data_min", fitted.data_min), ("data_max", fitted.data_max)):
        if observed.get(name) is not None:
            assert_within(observed[name], exact, 0.0, clause="SCALE-7.1", context=context,
                          what=f"fitted {name} (MINMAX-2: exact)")
    scale = observed.get("scale")
    if scale is not None and fitted.constant.any():
        a, b = fitted.feature_range
        bound = tolerance.statistic_bound(b - a, u * (b - a), dtypes["scale"])  # b - a rounded once (MINMAX-3)
        assert_within(np.where(fitted.constant, scale, b - a), np.full_like(scale, b - a), bound, clause="SCALE-3.1",
                      context=context, what="scale of the constant features (MINMAX-3: b - a)")


def check_transform(case: ScalerCase, fitted, x: np.ndarray, observed: np.ndarray, context: Context, *,
                    what: str = "transform") -> None:
    """Each output within SCALE-7.2 of the exact output from the exact statistics; numerically
    constant features (SCALE-3.2) finite."""
    bound, _ = SCALERS[case.op].bounds(fitted, x, input_dtype=case.dtype)
    expected = fitted.transform(x, exact=True)
    loose = numerically_constant(case, fitted)
    if loose.any():
        observed = np.asarray(observed, dtype=np.float64)
        finite = np.isfinite(observed) | np.isnan(x)
        if not finite[:, loose].all():
            index = tuple(int(i) for i in np.argwhere(~finite & loose)[0])
            context.fail("SCALE-3.2", what, f"element {list(index)} of a numerically constant feature is "
                                            f"{observed[index]!r}; it shall be finite", worst=index)
        expected = np.where(loose, observed, expected)  # finite is all SCALE-3.2 asks of them
        bound = np.where(loose, 0.0, bound)
    _check_not_treated_as_constant(case, fitted, x, observed, expected, bound, loose, context, what)
    if fitted.constant.any():  # a constant feature's output has a rule of its own (SCALE-3.1: divisor 1)
        columns = np.flatnonzero(fitted.constant)
        assert_within(np.asarray(observed)[:, columns], expected[:, columns], bound[:, columns], clause="SCALE-3.1",
                      context=context, what=f"{what}, constant features {columns.tolist()}", dtype=np.dtype(case.dtype))
    assert_within(observed, expected, bound, clause="SCALE-7.2", context=context, what=what,
                  dtype=np.dtype(case.dtype))


def _check_not_treated_as_constant(case, fitted, x, observed, expected, bound, loose, context, what) -> None:
    """A feature that is not (numerically) constant, whose outputs miss the bound but match the
    divisor 1 of a constant feature, was treated as constant: SCALE-3.2 names that cause."""
    if case.op == "standard_scaler":
        if not fitted.with_std:
            return
        constant_output = fitted.transform(x, exact=True) * fitted.scale  # the divisor 1 of SCALE-3.1
    else:
        a, b = fitted.feature_range
        constant_output = a + (np.asarray(x, dtype=np.float64) - fitted.data_min) * (b - a)
        if fitted.clip:
            constant_output = np.clip(constant_output, a, b)
    observed = np.asarray(observed, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        missed = ~(np.abs(observed - expected) <= bound) & np.isfinite(expected)
        as_constant = np.abs(observed - constant_output) <= bound
    suspects = ~fitted.constant & ~loose & (missed & as_constant).any(axis=0) & ~(missed & ~as_constant).any(axis=0)
    if suspects.any():
        j = int(np.flatnonzero(suspects)[0])
        i = int(np.flatnonzero(missed[:, j])[0])
        spread = (f"variance {fitted.variance[j]:.6g}" if case.op == "standard_scaler"
                  else f"range {fitted.data_range[j]:.6g}")
        context.fail("SCALE-3.2", what, f"feature {j} ({spread}, not constant) was treated as constant: element "
                                        f"[{i}, {j}] is {observed[i, j]:.9g}, the divisor-1 output "
                                        f"{constant_output[i, j]:.9g}; expected {expected[i, j]:.9g} within "
                                        f"{bound[i, j]:.3g}", worst=(i, j))


def check_round_trip(case: ScalerCase, fitted, x: np.ndarray, back: np.ndarray, context: Context) -> None:
    """inverse_transform(transform(x)) within SCALE-7.3 of x."""
    _, bound = SCALERS[case.op].bounds(fitted, x, input_dtype=case.dtype)
    loose = numerically_constant(case, fitted)
    bound = np.where(loose, np.inf, bound)
    assert_within(np.where(loose & np.isfinite(back), x, back), x, bound, clause="SCALE-7.3", context=context,
                  what="inverse_transform(transform(x))")


def numerically_constant(case: ScalerCase, fitted) -> np.ndarray:
    """SCALE-3.2's numerically constant features of a standardization that divides (either divisor is
    admitted for them, and only finiteness is required); none for min-max scaling."""
    if case.op != "standard_scaler" or not fitted.with_std:
        return np.zeros(case.shape[1], dtype=bool)
    return tolerance.numerically_constant(fitted, input_dtype=case.dtype)


def bounds(case: ScalerCase, fitted, x) -> tuple:
    """SCALE-7.2 and SCALE-7.3 for each element of x (infinite on numerically constant features)."""
    output, round_trip = SCALERS[case.op].bounds(fitted, x, input_dtype=case.dtype)
    loose = numerically_constant(case, fitted)
    return np.where(loose, np.inf, output), np.where(loose, np.inf, round_trip)


def with_chunks(case: ScalerCase, chunks: list) -> ScalerCase:
    return replace(case, chunks=chunks)
