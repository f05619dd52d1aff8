"""The fitted scalers (spec/scalers.md, STD, MINMAX): the fitted statistics after drawn chunkings
against the reference's fit of the concatenation, the transform and its inverse, the laws that
need no oracle (chunking, sample order, zero mean and unit variance), constant and near-constant
features, large offsets in float32, NaN, and the configurations to reject."""
import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from normspec import reference, tolerance
from normspec.compare import assert_within
from normspec.harness import adapter_call
from normspec.scalers import (ScalerContext, bounds, check_round_trip, check_statistics, check_transform, fit,
                              numerically_constant, reference_fit, scaler_cases, split, statistics, transform)
from normspec.strategies import SEEDS

SCALER_OPS = ("standard_scaler", "minmax_scaler")


def _scaler_test(*clauses, ops=SCALER_OPS, dtypes=("float32", "float64")):
    """A Hypothesis test of the scalers `ops` (SCALE-1's dtypes) citing `clauses`."""
    def mark(test):
        test = given(data=st.data())(test)
        for marker in (pytest.mark.ops(*ops), pytest.mark.dtypes(*dtypes), pytest.mark.clauses(*clauses)):
            test = marker(test)
        return test
    return mark


def _draw(data, op, dtype, adapter, **options):
    """A case with the options `adapter` supports (Capabilities.scaler_options), and two samples or
    more where the sample variance (d = 1) is declared: of one sample it is undefined (STD-2.2)."""
    if op == "standard_scaler" and adapter.conventions.scaler_ddof == 1:
        options["min_samples"] = max(2, options.get("min_samples", 1))
    return data.draw(scaler_cases(op=op, dtype=dtype, options=adapter.capabilities.scaler_options, **options),
                     label="case")


def _fitted_pair(adapter, case, device):
    """The adapter's scaler fitted on the case's chunks, the reference's fit and the context."""
    context = ScalerContext(adapter.id, case, device)
    return fit(adapter, case, device, context), reference_fit(adapter, case.chunks, case.op, case.options), context


@_scaler_test("SCALE-7.1", "SCALE-2.1", "STD-1", "STD-2", "STD-2.1", "STD-2.2", "STD-3", "MINMAX-1", "MINMAX-2",
              "MINMAX-3")
def test_fitted_statistics(adapter, op, dtype, device, data):
    """Fitting drawn chunks one after the other gives the statistics of their concatenation,
    within SCALE-7.1 (min-max extremes exactly), under the declared estimator (STD-2.2)."""
    case = _draw(data, op, dtype, adapter)
    scaler, fitted, context = _fitted_pair(adapter, case, device)
    check_statistics(case, fitted, statistics(scaler, context), context)


@_scaler_test("SCALE-2", "SCALE-7.2", "STD-4", "STD-5", "MINMAX-4", "MINMAX-5")
def test_transform_uses_the_fitted_statistics(adapter, op, dtype, device, data):
    """The transform of the fitted data and of new data is the exact output from the fitted data's
    exact statistics (SCALE-7.2), and it does not change the fitted statistics (SCALE-2)."""
    case = _draw(data, op, dtype, adapter)
    scaler, fitted, context = _fitted_pair(adapter, case, device)
    before = statistics(scaler, context)
    check_transform(case, fitted, case.new, transform(scaler, case.new, context), context, what="transform of new data")
    check_transform(case, fitted, case.data, transform(scaler, case.data, context), context,
                    what="transform of the fitted data")
    after = statistics(scaler, context)
    for name, value in before.items():
        if value is not None:
            assert_within(after[name], value, 0.0, clause="SCALE-2", context=context,
                          what=f"fitted {name} after two transforms, against before them")


@_scaler_test("SCALE-2")
def test_transform_of_one_row_is_its_row_of_the_batch(adapter, op, dtype, device, data):
    """Each output element depends on that element and the fitted statistics only, not on the
    other rows transformed with it (SCALE-2): a row alone gives its row of the batch, bit for bit
    up to the bound of each."""
    case = _draw(data, op, dtype, adapter)
    scaler, fitted, context = _fitted_pair(adapter, case, device)
    batch = transform(scaler, case.new, context).astype(np.float64)
    i = data.draw(st.integers(0, case.new.shape[0] - 1), label="row")
    alone = transform(scaler, case.new[i:i + 1], context).astype(np.float64)
    bound, _ = bounds(case, fitted, case.new[i:i + 1])
    assert_within(alone, batch[i:i + 1], 2 * bound, clause="SCALE-2", context=context,
                  what=f"transform of row {i} alone, against its row of the batch")


@_scaler_test("SCALE-2.1")
def test_chunking_invariance(adapter, op, dtype, device, data):
    """Fitting in drawn chunks equals fitting the concatenation at once: their statistics and their
    transforms of new data agree within the sum of the two fits' bounds (a law: no oracle values)."""
    case = _draw(data, op, dtype, adapter, min_samples=2)
    assume(len(case.chunks) > 1)
    whole = dataclasses.replace(case, chunks=[case.data])
    context = ScalerContext(adapter.id, case, device)
    chunked, at_once = fit(adapter, case, device, context), fit(adapter, whole, device, context)
    fitted_chunked = reference_fit(adapter, case.chunks, op, case.options)
    fitted_whole = reference_fit(adapter, whole.chunks, op, case.options)
    _assert_fits_agree(case, (chunked, fitted_chunked), (at_once, fitted_whole), context, clause="SCALE-2.1",
                       what=f"fit in {len(case.chunks)} chunks against the fit at once")


@_scaler_test("SCALE-2.2")
def test_sample_order_invariance(adapter, op, dtype, device, data):
    """Permuting the samples (and chunking them anew) changes the statistics and the transform by
    no more than the sum of the two fits' bounds."""
    case = _draw(data, op, dtype, adapter, min_samples=2)
    rows = case.data
    permutation = np.array(data.draw(st.permutations(range(rows.shape[0])), label="permutation"))
    rng = np.random.default_rng(data.draw(SEEDS, label="chunking seed"))
    cuts = rng.choice(np.arange(1, rows.shape[0]), size=min(len(case.chunks), rows.shape[0] - 1), replace=False)
    permuted = dataclasses.replace(case, chunks=split(rows[permutation], cuts))
    context = ScalerContext(adapter.id, case, device)
    pairs = [(fit(adapter, c, device, context), reference_fit(adapter, c.chunks, op, case.options))
             for c in (case, permuted)]
    _assert_fits_agree(case, *pairs, context, clause="SCALE-2.2", what="fit of the permuted samples")


def _assert_fits_agree(case, first, second, context, *, clause, what):
    """Two fits of the same samples agree: each statistic within the sum of both SCALE-7.1 bounds
    (extremes exactly), each transform output of new data within the sum of both SCALE-7.2 bounds."""
    (scaler_a, fitted_a), (scaler_b, fitted_b) = first, second
    stats_a, stats_b = statistics(scaler_a, context), statistics(scaler_b, context)
    if case.op == "standard_scaler":
        errors = [tolerance.fitted_statistic_errors(f, input_dtype=case.dtype) for f in (fitted_a, fitted_b)]
        names = {"mean": (fitted_a.mean, errors[0][0] + errors[1][0]),
                 "variance": (fitted_a.variance, errors[0][1] + errors[1][1])}
        for name, (exact, error) in names.items():
            if stats_a.get(name) is not None and stats_b.get(name) is not None:
                bound = 2 * tolerance.statistic_bound(exact, error / 2, stats_a[name].dtype)
                assert_within(stats_b[name], stats_a[name], bound, clause=clause, context=context,
                              what=f"{name} of the {what}")
    else:
        for name in ("data_min", "data_max"):
            if stats_a.get(name) is not None and stats_b.get(name) is not None:
                assert_within(stats_b[name], stats_a[name], 0.0, clause=clause, context=context,
                              what=f"{name} of the {what}")
    loose = numerically_constant(case, fitted_a) | numerically_constant(case, fitted_b)
    bound = sum(bounds(case, f, case.new)[0] for f in (fitted_a, fitted_b))
    y_a = transform(scaler_a, case.new, context).astype(np.float64)
    y_b = transform(scaler_b, case.new, context).astype(np.float64)
    assert_within(np.where(loose, y_a, y_b), y_a, np.where(loose, 0.0, bound), clause=clause, context=context,
                  what=f"transform of new data by the {what}")


@_scaler_test("STD-4", "SCALE-7.2", ops=("standard_scaler",))
def test_zero_mean_unit_variance(adapter, op, dtype, device, data):
    """On the fitted data, each standardized feature has mean 0 and variance (n - d)/n (1 for the
    population estimator), within the bounds that the outputs' own bounds imply."""
    case = _draw(data, op, dtype, adapter, min_samples=2)
    case = dataclasses.replace(case, options={"with_mean": True, "with_std": True})
    scaler, fitted, context = _fitted_pair(adapter, case, device)
    keep = ~fitted.constant & ~numerically_constant(case, fitted)
    assume(keep.any())
    x = case.data
    y = transform(scaler, x, context).astype(np.float64)[:, keep]
    bound = bounds(case, fitted, x)[0][:, keep]
    exact = fitted.transform(x, exact=True)[:, keep]
    n = x.shape[0]
    mean_bound = bound.mean(axis=0)
    assert_within(y.mean(axis=0), np.zeros(keep.sum()), mean_bound, clause="STD-4", context=context,
                  what="mean of each standardized feature of the fitted data")
    # The variance of the outputs moves by at most 2 mean(|y| e) + mean(e^2) + (mean error)^2.
    second_bound = 2 * (np.abs(exact) * bound).mean(axis=0) + (bound**2).mean(axis=0) + mean_bound**2
    assert_within(y.var(axis=0), np.full(keep.sum(), (n - fitted.ddof) / n), second_bound, clause="STD-4",
                  context=context, what="variance of each standardized feature of the fitted data")


@_scaler_test("MINMAX-4", "SCALE-7.2", ops=("minmax_scaler",))
def test_fitted_data_spans_the_feature_range(adapter, op, dtype, device, data):
    """On the fitted data, each non-constant min-max feature's outputs run from a to b."""
    case = _draw(data, op, dtype, adapter, min_samples=2)
    scaler, fitted, context = _fitted_pair(adapter, case, device)
    keep = ~fitted.constant
    assume(keep.any())
    y = transform(scaler, case.data, context).astype(np.float64)[:, keep]
    bound = bounds(case, fitted, case.data)[0][:, keep]
    a, b = fitted.feature_range
    low, high = np.argmin(case.data[:, keep], axis=0), np.argmax(case.data[:, keep], axis=0)
    columns = np.arange(keep.sum())
    assert_within(y.min(axis=0), np.full(keep.sum(), a), bound[low, columns], clause="MINMAX-4", context=context,
                  what="smallest output of each feature of the fitted data (a)")
    assert_within(y.max(axis=0), np.full(keep.sum(), b), bound[high, columns], clause="MINMAX-4", context=context,
                  what="largest output of each feature of the fitted data (b)")


@_scaler_test("SCALE-3", "SCALE-3.1", "STD-3", "MINMAX-3")
def test_constant_features(adapter, op, dtype, device, data):
    """Constant features (every sample equal, at offsets where a computed mean of copies is not
    exact) divide by 1: outputs 0 (standardization) or a (min-max) on the fitted data, and x - mu or
    a + (x - min)(b - a) on new data (SCALE-3.1)."""
    case = _draw(data, op, dtype, adapter, families=("constant_slices",))
    value = data.draw(st.sampled_from([0.1, 1000.1, -3.3e-5, 7.0]), label="value of feature 0")
    chunks = [c.copy() for c in case.chunks]
    for chunk in chunks:
        chunk[:, 0] = value
    case = dataclasses.replace(case, chunks=chunks)
    scaler, fitted, context = _fitted_pair(adapter, case, device)
    check_statistics(case, fitted, statistics(scaler, context), context)
    check_transform(case, fitted, case.data, transform(scaler, case.data, context), context,
                    what="transform of the fitted data")
    check_transform(case, fitted, case.new, transform(scaler, case.new, context), context,
                    what="transform of new data")


@_scaler_test("SCALE-3.2", "SCALE-7.2", ops=("standard_scaler",))
def test_near_constant_features(adapter, op, dtype, device, data):
    """Features c + sigma z whose spread sigma is drawn around the error bound of the variance: at
    or below it either divisor is admitted and the outputs need only be finite; above it the
    feature is not constant and the transform is held to SCALE-7.2 (SCALE-3.2)."""
    case = _draw(data, op, dtype, adapter, min_samples=3, families=("well_conditioned",))
    case = dataclasses.replace(case, options={"with_mean": True, "with_std": True})
    u = tolerance.compute_roundoff(dtype)
    n = case.data.shape[0]
    offset = data.draw(st.sampled_from([1.0, -37.5, 1000.0]), label="offset")
    log2_ratio = data.draw(st.integers(-4, 12), label="log2 of spread / (n u |offset|)")
    rng = np.random.default_rng(data.draw(SEEDS, label="seed"))
    spread = 2.0**log2_ratio * n * u * abs(offset)
    x = (offset + spread * rng.standard_normal(case.data.shape)).astype(case.data.dtype)
    cuts = np.cumsum([len(c) for c in case.chunks])[:-1]
    case = dataclasses.replace(case, chunks=split(x, cuts), new=(offset + spread * rng.standard_normal(
        case.new.shape)).astype(x.dtype))
    scaler, fitted, context = _fitted_pair(adapter, case, device)
    check_transform(case, fitted, case.data, transform(scaler, case.data, context), context,
                    what="transform of the fitted data")
    check_transform(case, fitted, case.new, transform(scaler, case.new, context), context,
                    what="transform of new data")


@_scaler_test("SCALE-3.2", "SCALE-7.2")
def test_small_magnitudes(adapter, op, dtype, device, data):
    """Data scaled by a small power of two: the outputs do not change, and a small nonzero spread
    or range is divided by, not treated as constant (SCALE-3.2). The powers keep the variances
    normal numbers of the compute precision (SCALE-7's domain: 2^-126 for float32, 2^-1022 for
    float64, with room for the spread of the families)."""
    case = _draw(data, op, dtype, adapter, min_samples=2, families=("well_conditioned", "dyadic_grid"))
    lowest = -50 if dtype == "float32" else -480
    power = 2.0 ** data.draw(st.integers(lowest, -20), label="log2 of the scale")
    scaled = dataclasses.replace(case, chunks=[(c.astype(np.float64) * power).astype(c.dtype) for c in case.chunks],
                                 new=(case.new.astype(np.float64) * power).astype(case.new.dtype))
    scaler, fitted, context = _fitted_pair(adapter, scaled, device)
    check_transform(scaled, fitted, scaled.data, transform(scaler, scaled.data, context), context,
                    what=f"transform of the fitted data times {power!r}")
    check_transform(scaled, fitted, scaled.new, transform(scaler, scaled.new, context), context,
                    what=f"transform of new data times {power!r}")


@_scaler_test("SCALE-6", "SCALE-7.1", "SCALE-7.2", dtypes=("float32",))
def test_large_offsets_in_float32(adapter, op, dtype, device, data):
    """float32 features offset + z with offset / spread from 1e2 to 1e6: within the domain, held
    to the same bounds, which grow with M = max|x| (the conditioning, as NUM-1.2)."""
    case = _draw(data, op, dtype, adapter, families=("well_conditioned",), min_samples=2)
    rng = np.random.default_rng(data.draw(SEEDS, label="seed"))
    ratio = 10.0 ** data.draw(st.integers(2, 6), label="log10 offset / spread")
    sign = data.draw(st.sampled_from([-1.0, 1.0]), label="sign")
    spread = 2.0 ** data.draw(st.integers(-6, 6), label="log2 spread")
    x = (sign * ratio * spread + spread * rng.standard_normal(case.data.shape)).astype(np.float32)
    new = (sign * ratio * spread + 2 * spread * rng.standard_normal(case.new.shape)).astype(np.float32)
    cuts = np.cumsum([len(c) for c in case.chunks])[:-1]
    case = dataclasses.replace(case, chunks=split(x, cuts), new=new, family="large_offset")
    scaler, fitted, context = _fitted_pair(adapter, case, device)
    check_statistics(case, fitted, statistics(scaler, context), context)
    check_transform(case, fitted, case.new, transform(scaler, case.new, context), context,
                    what="transform of new data")


@_scaler_test("SCALE-4", "SCALE-7.3", "STD-5", "MINMAX-5")
def test_inverse_round_trip(adapter, op, dtype, device, data):
    """inverse_transform(transform(x)) returns x within SCALE-7.3, for the fitted data and new data
    (unclipped: the inverse of a clipped output is that of the clipped value)."""
    case = _draw(data, op, dtype, adapter)
    if op == "minmax_scaler":
        case = dataclasses.replace(case, options=dict(case.options, clip=False))
    scaler, fitted, context = _fitted_pair(adapter, case, device)
    for x in (case.data, case.new):
        y = transform(scaler, x, context)
        back = transform(scaler, y, context, inverse=True)
        check_round_trip(case, fitted, x.astype(np.float64), back.astype(np.float64), context)


@_scaler_test("MINMAX-1", "MINMAX-4", "SCALE-7.2", ops=("minmax_scaler",))
def test_feature_range_and_clip(adapter, op, dtype, device, data):
    """New data up to three ranges beyond the fitted ones map linearly onto and beyond [a, b], or
    into [a, b] with clip (MINMAX-4)."""
    case = _draw(data, op, dtype, adapter, min_samples=2, families=("well_conditioned", "dyadic_grid"))
    low, high = case.data.min(axis=0), case.data.max(axis=0)
    rng = np.random.default_rng(data.draw(SEEDS, label="seed"))
    new = (low + (high - low) * rng.uniform(-3, 4, case.new.shape)).astype(case.data.dtype)
    case = dataclasses.replace(case, new=new)
    scaler, fitted, context = _fitted_pair(adapter, case, device)
    y = transform(scaler, new, context)
    check_transform(case, fitted, new, y, context, what=f"transform of new data, feature_range "
                                                        f"{case.options['feature_range']}, clip={case.options['clip']}")


@_scaler_test("SCALE-5")
def test_nan_in_fitted_and_new_data(adapter, op, dtype, device, data):
    """NaN in the fitted data is skipped (`ignore`) or makes its feature NaN (`propagate`), as the
    adapter declares; NaN in new data gives NaN at that element only (SCALE-5)."""
    case = _draw(data, op, dtype, adapter, min_samples=3, families=("well_conditioned", "dyadic_grid"))
    rng = np.random.default_rng(data.draw(SEEDS, label="seed"))
    x = case.data.copy()
    holes = rng.random(x.shape) < 0.2
    holes[:2] = False  # every feature keeps two samples (a feature of NaN only is unspecified; STD-2.2's d = 1)
    x[holes] = np.nan
    new = case.new.copy()
    new[rng.random(new.shape) < 0.2] = np.nan
    cuts = np.cumsum([len(c) for c in case.chunks])[:-1]
    case = dataclasses.replace(case, chunks=split(x, cuts), new=new)
    scaler, fitted, context = _fitted_pair(adapter, case, device)
    observed = transform(scaler, new, context)
    expected_nan = np.isnan(fitted.transform(new, exact=True))
    if (np.isnan(observed) != expected_nan).any():
        index = tuple(int(i) for i in np.argwhere(np.isnan(observed) != expected_nan)[0])
        context.fail("SCALE-5", "transform of new data", f"element {list(index)} is {observed[index]!r}; under the "
                     f"declared convention {adapter.conventions.scaler_nan!r} it shall "
                     f"{'' if expected_nan[index] else 'not '}be NaN", worst=index)
    check_transform(case, fitted, new, observed, context, what="transform of new data")
    check_statistics(case, fitted, statistics(scaler, context), context)


def _rejected(context, what, clause, call):
    """`call` shall raise (SCALE-8); returning anything is a non-conformance."""
    try:
        call()
    except Exception:  # the error SCALE-8 requires
        return
    context.fail(clause, what, "returned without an error; the spec requires the call to be rejected")


@pytest.mark.ops(*SCALER_OPS)
@pytest.mark.dtypes("float32", "float64")
@pytest.mark.clauses("SCALE-8", "SCALE-8.1", "SCALE-8.2")
@pytest.mark.parametrize("kind", ["transform_before_fit", "inverse_before_fit", "transform_other_features",
                                  "fit_other_features"])
def test_invalid_calls_are_rejected(adapter, op, dtype, device, kind):
    """A transform before any fit (SCALE-8.2), or data with another number of features (SCALE-8.1),
    raises; a rejected partial fit leaves the fitted statistics unchanged (SCALE-8)."""
    from normspec.scalers import ScalerCase
    np_dtype = np.dtype(dtype)
    x = np.array([[0.5, -1.25, 3.0], [1.5, 2.0, -0.75]], np_dtype)
    options = {"with_mean": True, "with_std": True} if op == "standard_scaler" else {"feature_range": (0.0, 1.0),
                                                                                       "clip": False}
    case = ScalerCase(op=op, dtype=dtype, chunks=[x], options=options, new=x)
    context = ScalerContext(adapter.id, case, device)
    clause = "SCALE-8.2" if kind.endswith("before_fit") else "SCALE-8.1"
    scaler = fit(adapter, case, device, context, chunks=[] if clause == "SCALE-8.2" else None)
    other = x[:, :2].copy()
    if kind == "transform_before_fit":
        _rejected(context, "transform before any partial_fit", clause, lambda: scaler.transform(x))
    elif kind == "inverse_before_fit":
        _rejected(context, "inverse_transform before any partial_fit", clause, lambda: scaler.inverse_transform(x))
    elif kind == "transform_other_features":
        _rejected(context, "transform of data with 2 features after a fit with 3", clause,
                  lambda: scaler.transform(other))
    else:
        before = statistics(scaler, context)
        _rejected(context, "partial_fit of 2 features after a fit with 3", clause, lambda: scaler.partial_fit(other))
        after = statistics(scaler, context)
        for name, value in before.items():
            if value is not None:
                assert_within(after[name], value, 0.0, clause="SCALE-8", context=context,
                              what=f"fitted {name} after a rejected partial_fit")


@pytest.mark.ops("standard_scaler")
@pytest.mark.dtypes("float64")
@pytest.mark.clauses("STD-2.2")
def test_sample_variance_of_one_sample_is_rejected(adapter, op, dtype, device):
    """Under the sample variance (d = 1) a fit of one sample is undefined and shall be rejected
    (STD-2.2): at the partial fit, or at the first transform or statistics() after it."""
    from normspec.scalers import ScalerCase
    if adapter.conventions.scaler_ddof != 1:
        pytest.skip("not applicable: the population variance (d = 0) of one sample is 0")
    x = np.array([[0.5, -1.25, 3.0]])
    case = ScalerCase(op=op, dtype=dtype, chunks=[x], options={"with_mean": True, "with_std": True}, new=x)
    context = ScalerContext(adapter.id, case, device)

    def fit_and_use():
        scaler = adapter.standard_scaler(with_mean=True, with_std=True, device=device)
        scaler.partial_fit(x)
        scaler.statistics()
        return scaler.transform(x)

    _rejected(context, "fit of one sample under the sample variance (d = 1)", "STD-2.2", fit_and_use)


@pytest.mark.ops("minmax_scaler")
@pytest.mark.dtypes("float64")
@pytest.mark.clauses("SCALE-8.3")
@pytest.mark.parametrize("kind", ["empty", "reversed", "infinite", "nan"])
def test_invalid_feature_range_is_rejected(adapter, op, dtype, device, kind):
    """A feature range (a, b) without finite a < b is rejected, at construction or at the fit, and
    gives no output (SCALE-8.3)."""
    from normspec.scalers import ScalerCase
    feature_range = {"empty": (1.0, 1.0), "reversed": (2.0, -1.0), "infinite": (0.0, float("inf")),
                     "nan": (float("nan"), 1.0)}[kind]
    x = np.array([[0.5, -1.25], [1.5, 2.0]])
    case = ScalerCase(op=op, dtype=dtype, chunks=[x], options={"feature_range": feature_range, "clip": False}, new=x)
    context = ScalerContext(adapter.id, case, device)

    def construct_fit_transform():
        scaler = adapter.minmax_scaler(feature_range=feature_range, clip=False, device=device)
        scaler.partial_fit(x)
        return scaler.transform(x)

    _rejected(context, f"minmax_scaler(feature_range={feature_range}) fitted and applied", "SCALE-8.3",
              construct_fit_transform)


@pytest.mark.ops("standard_scaler")
@pytest.mark.dtypes("float32", "float64")
@pytest.mark.requires("given_statistics")
@pytest.mark.clauses("SCALE-9")
@given(data=st.data())
def test_transform_with_given_statistics(adapter, op, dtype, device, data):
    """A standardization given its mean and standard deviation (the data's exact statistics rounded
    to its dtype, as a user computes them elsewhere) applies exactly those (SCALE-9)."""
    case = _draw(data, op, dtype, adapter)
    fitted = reference.standard_scaler(case.chunks, with_std=True)
    mean, std = (fitted.mean + fitted.mean_residual).astype(dtype), fitted.scale.astype(dtype)
    assume(np.all(np.isfinite(std) & (std > 0)))
    context = ScalerContext(adapter.id, case, device)
    with adapter_call(context, "standard_scaler_given(mean, std)", "SCALE-9"):
        scaler = adapter.standard_scaler_given(mean=mean, std=std, device=device)
    observed = transform(scaler, case.new, context)
    mean64, std64, x = mean.astype(np.float64), std.astype(np.float64), case.new.astype(np.float64)
    assert_within(observed, (x - mean64) / std64, tolerance.given_statistics_bound(x, mean64, std64, input_dtype=dtype),
                  clause="SCALE-9", context=context, what=f"transform with the given mean {mean.tolist()} and std "
                                                          f"{std.tolist()}", dtype=np.dtype(dtype))


@pytest.mark.ops("standard_scaler")
@pytest.mark.dtypes("float32")
@pytest.mark.requires("given_statistics")
@pytest.mark.clauses("SCALE-9")
@pytest.mark.parametrize("kind", ["zero", "negative", "infinite", "nan"])
def test_invalid_given_std_is_rejected(adapter, op, dtype, device, kind):
    """A given standard deviation that is not a finite number > 0 is rejected (SCALE-9), at
    construction or at the transform."""
    from normspec.scalers import ScalerCase
    x = np.array([[0.5, -1.25], [1.5, 2.0]], np.float32)
    bad = {"zero": 0.0, "negative": -1.0, "infinite": np.inf, "nan": np.nan}[kind]
    mean, std = np.zeros(2, np.float32), np.array([1.0, bad], np.float32)
    case = ScalerCase(op=op, dtype=dtype, chunks=[x], options={}, new=x)
    context = ScalerContext(adapter.id, case, device)
    _rejected(context, f"transform with the given std {std.tolist()}", "SCALE-9",
              lambda: adapter.standard_scaler_given(mean=mean, std=std, device=device).transform(x))

