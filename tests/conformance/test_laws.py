"""Laws that need no oracle: invariances, independence and identities that the math of
the spec implies. Each compares the implementation with itself; the allowed difference
is the sum of the two outputs' NUM-1.1 bounds."""
import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from normspec.driver import observe
from normspec.dtypes import numpy_dtype
from normspec.oracle import first_step_bound
from normspec.compare import Context, assert_within
from normspec.registry import OPS, slice_ids
from normspec.strategies import cases_for


def _law_case(data, adapter, op, dtype, **options):
    options = {"families": ("dyadic_grid",), "steps": [True], "running_stats": False, "min_reduction": 2,
               **options}
    return data.draw(cases_for(adapter, op=op, dtype=dtype, **options), label="case")


def _context(adapter, case, device, *, other=None, index=""):
    """Where a law failed: `case`, whose output must equal the output of `other` (indexed by
    `index`, Python text) within the bound; the reproduction prints both outputs' difference."""
    return Context(adapter.id, case.op, case.dtype, device, case.shape, case,
                   law=None if other is None else (other, index))


def _assert_law(adapter, device, changed, case, bound, *, clause, what, select=slice(None), select_text=""):
    """y(changed) equals y(case)[select] (written `select_text` in the reproduction) within
    `bound`: the law's failure cites `clause`."""
    observed = observe(adapter, changed, device)
    assert_within(observed, observe(adapter, case, device)[select], bound, clause=clause,
                  context=_context(adapter, changed, device, other=case, index=select_text), what=what)


def _training_batch_norm_law(test):
    """A BN-2 law: training BatchNorm, on adapters that train it, with drawn data."""
    test = given(data=st.data())(test)
    for mark in (pytest.mark.requires("batch_norm_training"), pytest.mark.ops("batch_norm"),
                 pytest.mark.clauses("BN-2")):
        test = mark(test)
    return test


def _with_input(case, x, **changes):
    return dataclasses.replace(case, inputs=[x.astype(numpy_dtype(case.dtype))], **changes)


def _estimator(adapter):
    return adapter.conventions.running_var_estimator


@pytest.mark.clauses("NORM-2")
@pytest.mark.ops("batch_norm", "layer_norm", "group_norm", "instance_norm")
@given(data=st.data())
def test_shift_invariance(adapter, op, dtype, device, data):
    """y(x + c) = y(x) for a constant c (exact in the input dtype): centring removes it."""
    case = _law_case(data, adapter, op, dtype)
    shift = data.draw(st.integers(-64, 64), label="shift in 1/16") / 16.0
    shifted = _with_input(case, case.inputs[0].astype(np.float64) + shift)
    bound = first_step_bound(case, _estimator(adapter)) + first_step_bound(shifted, _estimator(adapter))
    _assert_law(adapter, device, shifted, case, bound, clause="NORM-2", what=f"output after adding {shift}")


@pytest.mark.clauses("NORM-4", "NORM-5", "RMS-3")
@given(data=st.data())
def test_scale_invariance(adapter, op, dtype, device, data):
    """y(s*x; eps*s^2) = y(x; eps) for a power of two s: the spread scales away with eps."""
    case = _law_case(data, adapter, op, dtype)
    scale = 2.0 ** data.draw(st.integers(-3, 3), label="log2 scale")
    scaled = _with_input(case, case.inputs[0].astype(np.float64) * scale, eps=case.eps * scale**2)
    bound = first_step_bound(case, _estimator(adapter)) + first_step_bound(scaled, _estimator(adapter))
    _assert_law(adapter, device, scaled, case, bound, clause="RMS-3" if op == "rms_norm" else "NORM-5",
                what=f"output for x*{scale} and eps*{scale ** 2}")


@pytest.mark.clauses("NORM-5", "RMS-3")
@given(data=st.data())
def test_zero_mean_unit_variance(adapter, op, dtype, device, data):
    """Without affine parameters each slice of y has mean 0 and variance
    sigma^2 / (sigma^2 + eps) (RMSNorm: mean square q / (q + eps))."""
    case = _law_case(data, adapter, op, dtype, affine=False)
    x = case.inputs[0].astype(np.float64)
    ids = slice_ids(op, case.shape, case.attrs, case.channel_axis).ravel()
    count = np.bincount(ids)
    centring = op != "rms_norm"
    mean_x = np.bincount(ids, x.ravel()) / count if centring else np.zeros(len(count))
    spread = np.bincount(ids, (x.ravel() - mean_x[ids]) ** 2) / count
    assume(np.all(spread > 100 * case.eps))  # the law is about variance well above eps
    y = observe(adapter, case, device).ravel()
    bound = first_step_bound(case, _estimator(adapter)).ravel()
    mean_y = np.bincount(ids, y) / count if centring else np.zeros(len(count))
    second = np.bincount(ids, (y - mean_y[ids]) ** 2) / count
    x_hat = np.abs(x.ravel() - mean_x[ids]) / np.sqrt(spread[ids] + case.eps)
    second_bound = 2 * np.bincount(ids, x_hat * bound) / count + np.bincount(ids, bound**2) / count
    context = _context(adapter, case, device)
    clause = "NORM-5" if centring else "RMS-3"
    if centring:
        assert_within(mean_y, np.zeros_like(mean_y), np.bincount(ids, bound) / count + second_bound,
                      clause=clause, context=context, what="mean of each output slice")
    assert_within(second, spread / (spread + case.eps), second_bound + 2 * np.bincount(ids, bound) / count,
                  clause=clause, context=context,
                  what="variance of each output slice" if centring else "mean square of each output slice")


@pytest.mark.clauses("LN-2", "GN-2", "IN-2", "RMS-2")
@pytest.mark.ops("layer_norm", "group_norm", "instance_norm", "rms_norm")
@given(data=st.data())
def test_sample_independence(adapter, op, dtype, device, data):
    """Each sample's output depends on that sample alone."""
    case = _law_case(data, adapter, op, dtype)
    x = case.inputs[0]
    assume(x.shape[0] >= 2 and (op not in ("layer_norm", "rms_norm") or x.ndim > len(case.attrs["normalized_shape"])))
    i = data.draw(st.integers(0, x.shape[0] - 1), label="sample")
    alone = _with_input(case, x[i:i + 1])
    bound = first_step_bound(case, _estimator(adapter))[i:i + 1] * 2
    clause = OPS[op].independence_clause
    _assert_law(adapter, device, alone, case, bound, clause=clause, what=f"output of sample {i} alone",
                select=slice(i, i + 1), select_text=f"[{i}:{i + 1}]")


@_training_batch_norm_law
def test_batch_permutation_equivariance(adapter, op, dtype, device, data):
    """Training BatchNorm: permuting the batch permutes the output."""
    case = _law_case(data, adapter, op, dtype)
    x = case.inputs[0]
    permutation = np.array(data.draw(st.permutations(range(x.shape[0])), label="permutation"))
    permuted = _with_input(case, x[permutation])
    bound = first_step_bound(case, _estimator(adapter))[permutation] * 2
    _assert_law(adapter, device, permuted, case, bound, clause="BN-2", what="output of the permuted batch",
                select=permutation, select_text=f"[{permutation.tolist()}]")


@_training_batch_norm_law
def test_training_ignores_momentum_and_state(adapter, op, dtype, device, data):
    """Training output uses batch statistics only: not momentum, not the running statistics."""
    case = _law_case(data, adapter, op, dtype)
    channels = case.shape[case.channel_axis]
    np_dtype = numpy_dtype(dtype)
    other = dataclasses.replace(case, momentum=0.5 if case.momentum != 0.5 else 0.01, params=dict(
        case.params, running_mean=np.full(channels, 3.0, np_dtype), running_var=np.full(channels, 0.25, np_dtype)))
    bound = first_step_bound(case, _estimator(adapter)) * 2
    _assert_law(adapter, device, other, case, bound, clause="BN-2",
                what="training output with other momentum and running statistics")


@pytest.mark.clauses("BN-3")
@pytest.mark.ops("batch_norm")
@given(data=st.data())
def test_evaluation_ignores_batch(adapter, op, dtype, device, data):
    """Evaluation BatchNorm is a per-element affine map: a sample alone gives the same output."""
    case = _law_case(data, adapter, op, dtype, steps=[False], running_stats=True)
    x = case.inputs[0]
    i = data.draw(st.integers(0, x.shape[0] - 1), label="sample")
    alone = _with_input(case, x[i:i + 1])
    bound = first_step_bound(case, _estimator(adapter))[i:i + 1] * 2
    _assert_law(adapter, device, alone, case, bound, clause="BN-3", what=f"evaluation output of sample {i} alone",
                select=slice(i, i + 1), select_text=f"[{i}:{i + 1}]")


@pytest.mark.clauses("GN-2")
@pytest.mark.ops("group_norm")
@pytest.mark.parametrize("identity", ["one_group_is_layer_norm", "one_channel_per_group_is_instance_norm"])
@given(data=st.data())
def test_group_norm_identities(adapter, op, dtype, device, identity, data):
    """GroupNorm with one group normalizes each sample over all its elements (LayerNorm over
    the non-batch axes); with one channel per group it is InstanceNorm."""
    other_op = "layer_norm" if identity.startswith("one_group") else "instance_norm"
    if other_op not in adapter.capabilities.ops:
        pytest.skip(f"not applicable: {adapter.id} has no {other_op}")
    case = _law_case(data, adapter, op, dtype, affine=False)
    x = case.inputs[0]
    channels = x.shape[case.channel_axis]
    if other_op == "layer_norm":
        grouped = dataclasses.replace(case, attrs={"num_groups": 1})
        other = dataclasses.replace(case, op="layer_norm", attrs={"normalized_shape": x.shape[1:]})
    else:
        # InstanceNorm slices are the spatial positions of one channel: need two or more.
        assume(x.ndim >= 3 and int(np.prod([d for i, d in enumerate(x.shape) if i not in (0, case.channel_axis % x.ndim)])) >= 2)
        grouped = dataclasses.replace(case, attrs={"num_groups": channels})
        other = dataclasses.replace(case, op="instance_norm", attrs={},
                                    params=dict(case.params, running_mean=None, running_var=None))
    bound = first_step_bound(grouped, _estimator(adapter)) * 2
    _assert_law(adapter, device, grouped, other, bound, clause="GN-2", what=f"output against {other_op}")
