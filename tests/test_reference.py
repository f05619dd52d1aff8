"""The reference verified, not trusted: against mpmath at 60 digits, on random and
ill-conditioned inputs, for every op, through the same slice map the suite uses."""
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from normspec import reference, tolerance
from normspec.errors import ConfigurationError
from normspec.error_inputs import CLAUSES, error_case
from normspec.registry import DTYPES, OPS
from normspec.strategies import shapes, slice_ids

mpmath.mp.dps = 60


def _exact(x: np.ndarray, ids: np.ndarray, eps: float, *, center: bool) -> np.ndarray:
    """x_hat by mpmath, slice by slice (NORM-1 .. NORM-5, RMS-2)."""
    out = np.empty(x.size)
    flat_x, flat_ids = x.ravel(), ids.ravel()
    for slice_id in np.unique(flat_ids):
        where = np.flatnonzero(flat_ids == slice_id)
        values = [mpmath.mpf(float(v)) for v in flat_x[where]]
        mean = mpmath.fsum(values) / len(values) if center else 0
        second = mpmath.fsum([(v - mean) ** 2 for v in values]) / len(values)
        inverse_std = 1 / mpmath.sqrt(second + mpmath.mpf(eps))
        out[where] = [float((v - mean) * inverse_std) for v in values]
    return out.reshape(x.shape)


@st.composite
def _inputs(draw, op):
    channel_axis = draw(st.sampled_from([1, -1])) if OPS[op].has_channel_axis else 1
    shape, attrs = draw(shapes(op=op, channel_axis=channel_axis, min_reduction=2))
    size = int(np.prod(shape))
    if size > 300:  # mpmath is slow; keep the examples small
        shape, attrs = ((2, 3) if op in ("layer_norm", "rms_norm") else (2, 3, 2)), attrs
        if op in ("layer_norm", "rms_norm"):
            attrs = {"normalized_shape": (3,)}
        elif op == "group_norm":
            attrs = {"num_groups": 3}
        if channel_axis == -1 and op != "layer_norm" and op != "rms_norm":
            shape = (2, 2, 3)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offset = draw(st.sampled_from([0.0, 1.0, 1e4, 1e8, -1e12]))
    spread = 10.0 ** draw(st.integers(-3, 3))
    x = offset + spread * rng.standard_normal(shape)
    if draw(st.booleans()):
        x = x.astype(np.float32).astype(np.float64)  # float32-representable data, as frameworks see it
    eps = draw(st.sampled_from([1e-5, 1e-3, 1e-12]))
    return x, attrs, channel_axis, eps


def _call(op, x, attrs, channel_axis, eps):
    if op == "batch_norm":
        result, steps = reference.batch_norm(x, training=True, eps=eps, channel_axis=channel_axis, exact=True,
                                             return_steps=True)
        return result.output, steps
    if op == "instance_norm":
        result, steps = reference.instance_norm(x, eps=eps, channel_axis=channel_axis, exact=True, return_steps=True)
        return result.output, steps
    axis = {"channel_axis": channel_axis} if OPS[op].has_channel_axis else {}
    return OPS[op].reference(x, eps=eps, exact=True, return_steps=True, **attrs, **axis)


@pytest.mark.parametrize("op", list(OPS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_reference_matches_mpmath(op, data):
    x, attrs, channel_axis, eps = data.draw(_inputs(op), label="input")
    output, steps = _call(op, x, attrs, channel_axis, eps)
    exact = _exact(x, slice_ids(op, x.shape, attrs, channel_axis), eps, center=OPS[op].centring)
    error = np.abs(output - exact)
    bound = tolerance.reference_bound(exact, None, None)
    worst = np.unravel_index(np.argmax(error / bound), x.shape)
    assert np.all(error <= bound), (f"{op}: reference {output[worst]!r} vs mpmath {exact[worst]!r} at {worst}, "
                                    f"{error[worst] / (2 * tolerance.unit_roundoff(np.float64)):.1f} ulps")
    np.testing.assert_array_equal(steps.normalized, output)  # no affine: output is x_hat


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(OPS))
def test_reference_rounds_to_input_dtype(op, dtype):
    """NUM-2.2: the reference returns the input dtype unless asked for float64."""
    from normspec.dtypes import numpy_dtype
    x = np.linspace(-2, 3, 24).reshape(2, 3, 4).astype(numpy_dtype(dtype))
    attrs = {"normalized_shape": (4,)} if op in ("layer_norm", "rms_norm") else (
        {"num_groups": 3} if op == "group_norm" else {})
    output, _ = _call(op, x, attrs, 1, 1e-5)
    kwargs = {"training": True} if op == "batch_norm" else {}
    plain = OPS[op].reference(x, eps=1e-5, **attrs, **kwargs)
    plain = plain.output if hasattr(plain, "output") else plain
    assert plain.dtype == x.dtype
    np.testing.assert_array_equal(plain, output.astype(x.dtype))


@pytest.mark.parametrize("op,kind", [(op, kind) for op, row in OPS.items() for kind in row.error_kinds])
def test_reference_rejects_invalid_configurations(op, kind):
    """ERR-1: the reference raises ConfigurationError citing the clause, for every error kind."""
    case, clause = error_case(kind, op, "float32", 1)
    p = case.params
    kwargs = dict(eps=case.eps, **case.attrs)
    if OPS[op].stateful:
        kwargs["momentum"] = case.momentum
        args = (case.inputs[0], p["weight"], p["bias"], p["running_mean"], p["running_var"])
        if op == "batch_norm":
            kwargs["training"] = True
    else:
        args = (case.inputs[0],)
        kwargs.update(weight=p["weight"], **({"bias": p["bias"]} if op != "rms_norm" else {}))
    with pytest.raises(ConfigurationError, match=rf"^\[{clause}\]"):
        OPS[op].reference(*args, **kwargs)


@pytest.mark.parametrize("bad,clause", [
    (dict(x=np.arange(6).reshape(2, 3)), "ERR-1.1"),
    (dict(eps=float("nan")), "ERR-1.3"),
    (dict(x=np.zeros((0, 3))), "ERR-1.9"),
    (dict(channel_axis=0), "ERR-1.7"),
    (dict(running_mean=np.zeros(3)), "ERR-1.2"),
])
def test_reference_errors_name_the_clause(bad, clause):
    arguments = dict(x=np.ones((2, 3)), eps=1e-5, channel_axis=1)
    arguments.update(bad)
    x = arguments.pop("x")
    with pytest.raises(ConfigurationError, match=rf"^\[{clause}\]"):
        reference.batch_norm(x, training=True, **arguments)


def test_single_value_channel_rules():
    """BN-5.1: the biased profile gives beta; BN-5.2: the unbiased profile raises."""
    x = np.array([[0.5, -1.25]])
    result = reference.batch_norm(x, None, np.array([0.25, -2.0]), training=True, eps=1e-5,
                                  running_var_estimator="biased")
    np.testing.assert_array_equal(result.output, [[0.25, -2.0]])
    np.testing.assert_allclose(result.running_var, [0.9, 0.9])
    with pytest.raises(ConfigurationError, match=r"^\[BN-5.2\]"):
        reference.batch_norm(x, training=True, eps=1e-5)


def test_cumulative_average_and_evaluation():
    """BN-4.2: momentum None averages the batches; BN-3: evaluation leaves the state alone."""
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((5, 2)) for _ in range(3)]
    mean, var, count = None, None, 0
    for batch in batches:
        result = reference.batch_norm(batch, None, None, mean, var, training=True, momentum=None, eps=1e-5,
                                      num_batches_tracked=count, exact=True)
        mean, var, count = result.running_mean, result.running_var, result.num_batches_tracked
    np.testing.assert_allclose(mean, np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-14)
    np.testing.assert_allclose(var, np.mean([b.var(0, ddof=1) for b in batches], axis=0), rtol=1e-14)
    frozen = reference.batch_norm(batches[0], None, None, mean, var, training=False, eps=1e-5, exact=True)
    np.testing.assert_array_equal(frozen.running_mean, mean)
    np.testing.assert_allclose(frozen.output, (batches[0] - mean) / np.sqrt(var + 1e-5), rtol=1e-14)


def test_constant_slice_gives_exactly_beta():
    """NUM-3.2: the reference returns beta exactly for a constant slice at a large offset."""
    x = np.full((3, 1000), 1000.1, np.float32)
    bias = np.linspace(-1, 1, 1000).astype(np.float32)
    np.testing.assert_array_equal(reference.layer_norm(x, (1000,), None, bias, eps=1e-5), np.broadcast_to(bias, x.shape))


def test_float64_near_the_top_of_the_range():
    """NUM-1.3: the reference itself does not overflow on float64 inputs near the limit."""
    x = np.array([[1e200, -1e200], [1e300, 3e300]])
    np.testing.assert_allclose(reference.layer_norm(x, (2,), eps=1e-5), [[1, -1], [-1, 1]], rtol=1e-15)


def test_float64_bounds_keep_their_half_subnormal_terms():
    """NUM-1.1's (1/2) tau terms are 2^-1075 for float64 data, below float64's smallest
    subnormal: divided naively they round to 0, and a float64 output one subnormal from the
    reference would meet a bound of 0. The exact bound of every element is at least
    tau = 2^-1074."""
    from normspec.cases import Case
    from normspec.oracle import first_step_bound
    tau = 2.0**-1074
    x = np.array([[3e-309, -5e-310], [1e-310, 0.0]])
    case = Case(op="batch_norm", dtype="float64", inputs=[x], training=[False], eps=1e-5,
                params={"weight": None, "bias": None, "running_mean": np.zeros(2), "running_var": np.ones(2)})
    assert (first_step_bound(case) >= tau).all()
    assert tolerance.half_rounded_up(tau) == tau and tolerance.half_rounded_up(3.0) == np.nextafter(1.5, 2)
