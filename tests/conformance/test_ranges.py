"""Two domains the drawn cases do not reach: slices whose squares overflow the compute precision
(NUM-1.3's out-of-range branch: within the bound or NaN), and a channel axis other than 1 and -1
(GEN-4: any non-batch axis)."""
import numpy as np
import pytest

from normspec import oracle
from normspec.cases import Case
from normspec.compare import ClauseRouting, Context, assert_within
from normspec.dtypes import numpy_dtype
from normspec.driver import observe
from normspec.registry import OPS, slice_ids
from normspec.strategies import fill

_CHANNELS = 4


def _case(op: str, dtype: str, shape: tuple, channel_axis: int, x: np.ndarray) -> Case:
    """A one-step training case of `op` on x with weight and bias, fresh (BatchNorm) or no (InstanceNorm)
    running statistics."""
    np_dtype = numpy_dtype(dtype)
    row = OPS[op]
    attrs = {"normalized_shape": shape[-1:]} if not row.has_channel_axis else (
        {"num_groups": 2} if op == "group_norm" else {})
    params_shape = attrs.get("normalized_shape") or (shape[channel_axis],)
    rng = np.random.default_rng(1)
    params = {"weight": rng.uniform(0.5, 2, params_shape).astype(np_dtype),
              "bias": np.round(rng.uniform(-2, 2, params_shape), 2).astype(np_dtype) if row.has_bias else None}
    if row.stateful:
        params.update(running_mean=None, running_var=None)
    return Case(op=op, dtype=dtype, inputs=[x], training=[True], eps=1e-5, attrs=attrs, params=params,
                momentum=0.1, channel_axis=channel_axis)


# n * max|x|^2 beyond the largest float32 (about 3.4e38): just beyond (2^66, squares about 1e40) and far
# beyond (2^100, squares about 1e60, still finite in float32 and bfloat16).
_MAGNITUDES = {"just_beyond": 2.0 ** 66, "far_beyond": 2.0 ** 100}


@pytest.mark.clauses("NUM-1.3")
@pytest.mark.dtypes("float32", "bfloat16")  # float16's largest value squared stays finite in float32
@pytest.mark.parametrize("kind", list(_MAGNITUDES))
def test_out_of_range_slices_are_accurate_or_nan(adapter, op, dtype, device, kind):
    """Every slice out of NUM-1.3's range: each output element within the bound of NUM-1.1 of its
    exact value (computed in float64, where the squares are finite) or NaN; beta, +-Inf or another
    finite value outside the bound is non-conforming (the overflow of the statistics must show)."""
    axis = adapter.conventions.channel_axis
    shape = (4, _CHANNELS, 8) if axis == 1 else (4, 8, _CHANNELS)
    np_dtype = numpy_dtype(dtype)
    z = np.round(np.random.default_rng(0).standard_normal(shape), 2) + 0.5
    x = (z * _MAGNITUDES[kind]).astype(np_dtype)
    case = _case(op, dtype, shape, axis, x)
    if op == "batch_norm" and not adapter.capabilities.batch_norm_training:
        pytest.skip("not run: the adapter's BatchNorm does not train")
    observed = observe(adapter, case, device)
    result, steps = oracle.reference_step(case, x, *oracle.initial_state(case), True, 0,
                                          adapter.conventions.running_var_estimator)
    assert_within(observed, result.output, oracle.output_bound(case, steps, result.output), clause="NUM-1.3",
                  context=Context(adapter.id, op, dtype, device, shape, case=case), dtype=np_dtype,
                  nan_allowed=np.ones(shape, bool))


# Rank-4 inputs with the channels on an axis other than 1 and -1 (the shape pool's): 2, -2, 3 and -3.
_AXES = {"axis2": 2, "axis-2": -2, "axis3": 3, "axis-3": -3}


@pytest.mark.clauses("GEN-4", "BN-1", "GN-1", "IN-1", "NUM-1.1")
@pytest.mark.ops("batch_norm", "group_norm", "instance_norm")
# Where the slices are is the question here; accuracy in half precision is test_forward's.
@pytest.mark.dtypes("float32", "float64")
@pytest.mark.parametrize("kind", list(_AXES))
def test_any_non_batch_channel_axis(adapter, op, dtype, device, kind):
    """GEN-4: the channel axis is any non-batch axis. The case is drawn with its channels on axis
    2, -2, 3 or -3 of a rank-4 input and judged by the reference with that axis; the adapter, whose
    layout is fixed (channels on 1 or -1), gets it with the channel axis moved to its own place, and
    its output is moved back. The slices (BN-1, GN-2, IN-2) must follow the channel, wherever it is."""
    if op == "batch_norm" and not adapter.capabilities.batch_norm_training:
        pytest.skip("not run: the adapter's BatchNorm does not train")
    axis, own = _AXES[kind], adapter.conventions.channel_axis
    shape = [2, 3, 5, 6]
    shape[axis] = _CHANNELS
    shape = tuple(shape)
    np_dtype = numpy_dtype(dtype)
    logical = _case(op, dtype, shape, axis, np.zeros(shape, np_dtype))
    ids = slice_ids(op, shape, logical.attrs, axis)
    x = fill(np.random.default_rng(0), "well_conditioned", shape, ids, np_dtype, logical.eps)
    logical.inputs = [x]
    moved = np.ascontiguousarray(np.moveaxis(x, axis, own))
    adapter_case = Case(op=op, dtype=dtype, inputs=[moved], training=[True], eps=logical.eps, attrs=logical.attrs,
                        params=logical.params, momentum=logical.momentum, channel_axis=own)
    observed = np.moveaxis(observe(adapter, adapter_case, device), own, axis)
    result, steps = oracle.reference_step(logical, x, *oracle.initial_state(logical), True, 0,
                                          adapter.conventions.running_var_estimator)
    # Slices that do not follow the channel miss by the size of the values; an error within a few
    # bounds is an accuracy finding of NUM-1.1, as test_forward_matches_reference reports it.
    assert_within(observed, result.output, oracle.output_bound(logical, steps, result.output),
                  clause=ClauseRouting("NUM-1.1") if _near(observed, result.output) else "GEN-4",
                  context=Context(adapter.id, op, dtype, device, moved.shape, case=adapter_case), dtype=np_dtype)


def _near(observed, expected) -> bool:
    """Whether every output is within 1e-3 of its exact value, relative to the output's scale:
    the slices are right, whatever the accuracy (a wrong slice moves outputs by about 1)."""
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.abs(observed - expected) <= 1e-3 * max(1.0, float(np.nanmax(np.abs(expected))))))
