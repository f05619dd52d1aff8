"""The scaler references verified, not trusted: against mpmath at 60 digits, on random and
ill-conditioned data in chunks (SCALE-2.1), constant features (SCALE-3.1) and NaN (SCALE-5)."""
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from normspec import reference, tolerance
from normspec.errors import ConfigurationError

mpmath.mp.dps = 60
U = tolerance.unit_roundoff(np.float64)
BOUND = 2 * tolerance.REFERENCE_ULPS * U  # the reference's own budget, as for the layers (tolerance.py)


@st.composite
def _data(draw):
    """(chunks, data as float64): 1 to 4 chunks of 1 to 7 samples, 1 to 3 features, each feature
    with its own offset and spread; some features constant."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    features = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 7), min_size=1, max_size=4))
    offset = np.array([draw(st.sampled_from([0.0, 1.0, 1e4, 1e8, -1e12])) for _ in range(features)])
    spread = np.array([10.0 ** draw(st.integers(-3, 3)) for _ in range(features)])
    data = offset + spread * rng.standard_normal((sum(sizes), features))
    if draw(st.booleans()):
        data[:, 0] = data[0, 0]  # a constant feature
    if draw(st.booleans()):
        data = data.astype(np.float32).astype(np.float64)  # float32-representable, as frameworks see it
    bounds = np.cumsum(sizes)[:-1]
    return np.split(data, bounds), data


def _exact_moments(column):
    values = [mpmath.mpf(float(v)) for v in column if not np.isnan(v)]
    mean = mpmath.fsum(values) / len(values)
    return mean, mpmath.fsum([(v - mean) ** 2 for v in values]) / len(values), values


@settings(max_examples=60, deadline=None)
@given(drawn=_data(), ddof=st.sampled_from([0, 1]), with_mean=st.booleans(), with_std=st.booleans())
def test_standard_scaler_matches_mpmath(drawn, ddof, with_mean, with_std):
    chunks, data = drawn
    if ddof == 1 and data.shape[0] == 1:
        with pytest.raises(ConfigurationError, match=r"^\[STD-2\.2\]"):
            reference.standard_scaler(chunks, ddof=ddof)
        return
    fitted = reference.standard_scaler(chunks, ddof=ddof, with_mean=with_mean, with_std=with_std)
    y = fitted.transform(data, exact=True)
    back = fitted.inverse_transform(y, exact=True)
    for j in range(data.shape[1]):
        mean, population, values = _exact_moments(data[:, j])
        n = len(values)
        variance = population * n / (n - ddof)
        sigma = mpmath.sqrt(population)
        assert abs(fitted.mean[j] + fitted.mean_residual[j] - mean) <= BOUND * (abs(mean) + sigma), ("mean", j)
        assert abs(fitted.variance[j] - variance) <= BOUND * variance, ("variance", j)
        assert fitted.constant[j] == (population == 0)
        divisor = mpmath.sqrt(variance) if with_std and population != 0 else 1  # STD-3, SCALE-3.1
        subtrahend = mean if with_mean else 0
        for i, v in enumerate(values):
            exact = (v - subtrahend) / divisor
            assert abs(y[i, j] - exact) <= BOUND * (1 + abs(exact)), ("output", i, j, y[i, j], float(exact))
            # The inverse of the reference's own output: its error is that output's, times the divisor.
            assert abs(back[i, j] - v) <= BOUND * (divisor * (2 + abs(exact)) + abs(v)), ("inverse", i, j)


@settings(max_examples=60, deadline=None)
@given(drawn=_data(), low=st.integers(-4, 3), width=st.integers(1, 8), clip=st.booleans())
def test_minmax_scaler_matches_mpmath(drawn, low, width, clip):
    chunks, data = drawn
    a, b = low / 4, (low + width) / 4
    fitted = reference.minmax_scaler(chunks, feature_range=(a, b), clip=clip)
    new = data[::-1] * 1.5  # new data, partly outside the fitted range
    y = fitted.transform(new, exact=True)
    for j in range(data.shape[1]):
        column = [mpmath.mpf(float(v)) for v in data[:, j]]
        low_j, high_j = min(column), max(column)
        assert fitted.data_min[j] == low_j and fitted.data_max[j] == high_j  # MINMAX-2: exact
        scale = (mpmath.mpf(b) - a) / ((high_j - low_j) if high_j != low_j else 1)  # MINMAX-3, SCALE-3.1
        for i, v in enumerate(new[:, j]):
            exact = a + (mpmath.mpf(float(v)) - low_j) * scale
            exact = min(max(exact, a), b) if clip else exact
            assert abs(y[i, j] - exact) <= BOUND * (1 + abs(exact)), ("output", i, j)


def test_nan_conventions():
    """SCALE-5: `ignore` fits the non-NaN samples and passes NaN through; `propagate` makes the
    feature's statistics and outputs NaN."""
    x = np.array([[1.0, np.nan], [3.0, 2.0], [np.nan, 4.0]])
    ignored = reference.standard_scaler(x)
    np.testing.assert_array_equal(ignored.mean, [2.0, 3.0])
    np.testing.assert_array_equal(ignored.variance, [1.0, 1.0])
    np.testing.assert_array_equal(np.isnan(ignored.transform(x)), np.isnan(x))
    propagated = reference.standard_scaler(x, nan="propagate")
    assert np.isnan(propagated.transform(np.ones((1, 2)))).all()
    minmax = reference.minmax_scaler(x)
    np.testing.assert_array_equal(minmax.data_min, [1.0, 2.0])
    np.testing.assert_array_equal(minmax.transform(x), [[0.0, np.nan], [1.0, 0.0], [np.nan, 1.0]])


def test_constant_features_divide_by_one():
    """SCALE-3.1: a constant feature at an offset whose float64 mean of copies is not exact."""
    x = np.full((10, 1), 0.1)
    fitted = reference.standard_scaler(x)
    assert fitted.variance[0] == 0 and fitted.scale[0] == 1
    np.testing.assert_array_equal(fitted.transform(np.array([[0.1], [1.1]]), exact=True), [[0.0], [1.1 - 0.1]])
    minmax = reference.minmax_scaler(x, feature_range=(-1, 1))
    np.testing.assert_array_equal(minmax.transform(np.array([[0.1], [0.6]]), exact=True), [[-1.0], [-1.0 + 0.5 * 2]])


@pytest.mark.parametrize("call, clause", [
    (lambda: reference.standard_scaler([np.ones((2, 2)), np.ones((2, 3))]), "SCALE-8.1"),
    (lambda: reference.standard_scaler(np.ones((2, 2))).transform(np.ones((1, 3))), "SCALE-8.1"),
    (lambda: reference.standard_scaler([]), "SCALE-8.2"),
    (lambda: reference.minmax_scaler(np.ones((2, 2)), feature_range=(1, 1)), "SCALE-8.3"),
    (lambda: reference.minmax_scaler(np.ones((2, 2)), feature_range=(0, np.inf)), "SCALE-8.3"),
    (lambda: reference.standard_scaler(np.ones((2, 2), np.int64)), "SCALE-1"),
    (lambda: reference.standard_scaler(np.ones(3)), "SCALE-1"),
    (lambda: reference.standard_scaler(np.ones((1, 2)), ddof=1), "STD-2.2"),
    (lambda: reference.standard_scaler(np.ones((2, 2)), ddof=2), "STD-2.2"),
])
def test_reference_errors_name_the_clause(call, clause):
    with pytest.raises(ConfigurationError, match=rf"^\[{clause}\]"):
        call()


def test_output_dtype_is_the_input_dtype():
    """SCALE-6: the transform and the inverse return the input's dtype."""
    x = np.linspace(-2, 3, 12, dtype=np.float32).reshape(4, 3)
    for fitted in (reference.standard_scaler(x), reference.minmax_scaler(x)):
        assert fitted.transform(x).dtype == np.float32 and fitted.inverse_transform(x).dtype == np.float32
