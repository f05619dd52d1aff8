"""The backward pass (spec/gradients.md): every VJP against the reference within GRAD-6,
and the laws of GRAD-2 to GRAD-7 that hold whatever the oracle. Adapters declare the
ops they differentiate in `capabilities.backward_ops`."""
import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from normspec import backward, tolerance
from normspec.driver import observe
from normspec.dtypes import numpy_dtype
from normspec.oracle import first_step_bound
from normspec.compare import Context, assert_within
from normspec.registry import OPS, slice_ids
from normspec.strategies import backward_cases, cotangent, long_slice_case

_BACKWARD = pytest.mark.requires("backward_ops")


def _context(adapter, case, device):
    return Context(adapter.id, case.op, case.dtype, device, case.shape, case)


def _slice_sums(values, case):
    """Sums over each forward slice (float64, exact enough: see reference_dot_bound)."""
    ids = slice_ids(case.op, case.shape, case.attrs, case.channel_axis).ravel()
    return np.bincount(ids, weights=np.ravel(values))


@_BACKWARD
@pytest.mark.clauses("GRAD-1", "GRAD-2", "GRAD-3", "GRAD-4", "GRAD-5", "GRAD-6.1", "GRAD-6.2", "GRAD-6.3",
                     "GRAD-7.2", "GRAD-8.2", "GEN-6")
@given(data=st.data())
def test_vjp_matches_reference(adapter, op, dtype, device, data):
    """dx, dgamma and dbeta of every value family and cotangent (Gaussian, common offset,
    ones), training and evaluation, against the reference VJP."""
    case = data.draw(backward_cases(adapter, op=op, dtype=dtype), label="case")
    backward.run_vjp_case(adapter, case, device)


@_BACKWARD
@pytest.mark.clauses("GRAD-8.1")
@pytest.mark.dtypes("float16", "bfloat16")
@pytest.mark.parametrize("family", ["exact_statistics", "large_offset"])
def test_vjp_half_precision_accumulation(adapter, op, dtype, device, family):
    """Reductions of 4096 elements with a cotangent near 1: a float16 (bfloat16) running sum
    stalls at 2048 (256), far from the exact sum of about 4096 (GRAD-8.1). One slice of 4096
    (mean(g), mean(g x_hat); BatchNorm, GroupNorm and InstanceNorm also sum their parameter
    gradients over it) and, for LayerNorm and RMSNorm, whose parameters sum over the rows,
    4096 rows of 2."""
    shapes = [dict(length=4096)] + ([dict(length=2, rows=4096)] if not OPS[op].has_channel_axis else [])
    for shape in shapes:
        case = long_slice_case(adapter, op=op, dtype=dtype, family=family, **shape)
        np_dtype = numpy_dtype(dtype)
        ones = np.ones(case.shape[case.channel_axis] if OPS[op].has_channel_axis else case.shape[-1], np_dtype)
        params = {**case.params, "weight": ones, "bias": None if op == "rms_norm" else np.zeros_like(ones)}
        dy = cotangent(np.random.default_rng(1), "near_one", case.shape, np_dtype)
        backward.run_vjp_case(adapter, dataclasses.replace(case, cotangent=dy, params=params), device,
                              clause="GRAD-8.1")


@_BACKWARD
@pytest.mark.clauses("GRAD-2")
@given(data=st.data())
def test_parameter_gradients_are_sums(adapter, op, dtype, device, data):
    """d(beta) = sum of dy and d(gamma) = sum of dy * x_hat over the axes the parameters do
    not span, with x_hat the implementation's own output without affine parameters."""
    case = data.draw(backward_cases(adapter, op=op, dtype=dtype, affine=True, families=("dyadic_grid",
                                                                                         "well_conditioned")),
                     label="case")
    gradient = backward.observe_vjp(adapter, case, device)
    _, _, bounds = backward.reference(adapter, case)
    plain = dataclasses.replace(case, params={**case.params, "weight": None, "bias": None})
    x_hat = observe(adapter, plain, device, what="output without affine parameters")
    x_hat_error = first_step_bound(plain, adapter.conventions.running_var_estimator)
    dy = case.cotangent.astype(np.float64)
    axes = tuple(a for a in range(dy.ndim) if a not in backward.parameter_axes(case))
    context = _context(adapter, case, device)
    if gradient["bias"] is not None:
        assert_within(gradient["bias"], dy.sum(axis=axes), bounds["bias"], clause="GRAD-2", context=context,
                      what="dbias against the sum of dy", dtype=numpy_dtype(dtype))
    law_error = tolerance.reference_dot_bound(dy, 0.0, x_hat, x_hat_error, axis=axes)
    assert_within(gradient["weight"], (dy * x_hat).sum(axis=axes), bounds["weight"] + law_error, clause="GRAD-2",
                  context=context, what="dweight against the sum of dy * (output without affine)",
                  dtype=numpy_dtype(dtype))


@_BACKWARD
@pytest.mark.clauses("GRAD-3", "GRAD-4")
@given(data=st.data())
def test_input_gradient_projections(adapter, op, dtype, device, data):
    """Per slice, sum(dx) = 0 (the centring ops) and sum(dx * x_hat) = eps r^3 sum(g x_hat)
    (RMSNorm: sum(dx * x) = eps r^2 sum(g x_hat)), within the sum of the GRAD-6.1 bounds."""
    case = data.draw(backward_cases(adapter, op=op, dtype=dtype, training=True,
                                    families=("dyadic_grid", "well_conditioned", "exact_statistics")), label="case")
    dx = backward.observe_vjp(adapter, case, device)["x"]
    expected, steps, bounds = backward.reference(adapter, case)
    # The law is about finite gradients: an exact dx beyond the dtype's range rounds to +-Inf
    # (which test_vjp_matches_reference accepts), and Inf - Inf has no sum.
    with np.errstate(over="ignore"):
        assume(np.all(np.isfinite(expected["x"].astype(numpy_dtype(dtype)))))
    ids = slice_ids(op, case.shape, case.attrs, case.channel_axis)
    first = np.unique(ids, return_index=True)[1]
    r, x_hat = steps.inverse_std.ravel()[first], steps.normalized
    weight = backward.broadcast_weight(case)
    g = case.cotangent.astype(np.float64) * (1.0 if weight is None else weight)
    projection = case.eps * r**3 * _slice_sums(g * x_hat, case)
    context = _context(adapter, case, device)
    if OPS[op].centring:
        assert_within(_slice_sums(dx, case), np.zeros_like(r), _slice_sums(bounds["x"], case), clause="GRAD-3",
                      context=context, what="sum of dx over each slice")
        assert_within(_slice_sums(dx * x_hat, case), projection, _slice_sums(bounds["x"] * np.abs(x_hat), case),
                      clause="GRAD-3", context=context, what="sum of dx * x_hat over each slice")
    else:
        x = case.inputs[0].astype(np.float64)
        assert_within(_slice_sums(dx * x, case), projection / r, _slice_sums(bounds["x"] * np.abs(x), case),
                      clause="GRAD-4", context=context, what="sum of dx * x over each slice")


@_BACKWARD
@pytest.mark.clauses("GRAD-5", "GRAD-6.2")
@pytest.mark.ops("batch_norm")
@given(data=st.data())
def test_frozen_gradient_is_elementwise(adapter, op, dtype, device, data):
    """Evaluation-mode BatchNorm: dx = gamma dy / sqrt(running_var + eps), element by
    element, from the running statistics alone; nothing flows through the batch."""
    case = data.draw(backward_cases(adapter, op=op, dtype=dtype, training=False), label="case")
    dx = backward.observe_vjp(adapter, case, device)["x"]
    p, axis = case.params, case.channel_axis
    shape = [-1 if a == axis % dx.ndim else 1 for a in range(dx.ndim)]
    scale = 1.0 / np.sqrt(p["running_var"].astype(np.float64) + case.eps)
    if p.get("weight") is not None:
        scale = scale * p["weight"].astype(np.float64)
    _, _, bounds = backward.reference(adapter, case)
    assert_within(dx, scale.reshape(shape) * case.cotangent.astype(np.float64), bounds["x"], clause="GRAD-5",
                  context=_context(adapter, case, device), what="dx against gamma dy / sqrt(running_var + eps)",
                  dtype=numpy_dtype(dtype))


@_BACKWARD
@pytest.mark.clauses("GRAD-7.1")
@given(data=st.data())
def test_vjp_is_repeatable(adapter, op, dtype, device, data):
    """Two backward calls on identical inputs return bitwise identical gradients."""
    case = data.draw(backward_cases(adapter, op=op, dtype=dtype), label="case")
    first = backward.observe_vjp(adapter, case, device)
    second = backward.observe_vjp(adapter, case, device)
    context = _context(adapter, case, device)
    for name, value in first.items():
        if value is not None:
            assert_within(second[name], value, 0, clause="GRAD-7.1", context=context,
                          what=f"d{name} of a second identical call")
