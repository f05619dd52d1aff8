"""Valid configurations at the edges of the parameter space: eps = 0, momentum 0, a
weight or a bias alone, slices of one element, and non-finite parameters or running
statistics. Each is a differential check against the reference (run_case)."""
import dataclasses
import functools
import itertools

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from normspec.cases import Case
from normspec.compare import ClauseRouting
from normspec.driver import run_case
from normspec.dtypes import numpy_dtype
from normspec.registry import OPS, slice_ids
from normspec.strategies import SEEDS, cases_for, fill

_NONZERO_SPREAD = ("well_conditioned", "dyadic_grid", "exact_statistics", "large_offset")


def _slice_spread(case) -> np.ndarray:
    """max - min of each slice of the first input (0 for a constant slice)."""
    ids = slice_ids(case.op, case.shape, case.attrs, case.channel_axis).ravel()
    x = case.inputs[0].astype(np.float64).ravel()
    high, low = np.full(ids.max() + 1, -np.inf), np.full(ids.max() + 1, np.inf)
    np.maximum.at(high, ids, x)
    np.minimum.at(low, ids, x)
    return high - low


@pytest.mark.clauses("NORM-4", "NUM-3.3", "NUM-1.1")
@given(data=st.data())
def test_eps_zero(adapter, op, dtype, device, data):
    """eps = 0 is valid (ERR-1.3): r = 1/sqrt(sigma^2) on every slice with nonzero variance
    (NUM-3.3 leaves zero-variance slices with eps = 0 unspecified, so none is drawn)."""
    case = data.draw(cases_for(adapter, op=op, dtype=dtype, min_reduction=2, families=_NONZERO_SPREAD,
                               steps=[True]), label="case")
    case = dataclasses.replace(case, eps=0.0)
    assume(np.all(_slice_spread(case) > 0))
    run_case(adapter, case, device)


@pytest.mark.clauses("BN-4.1", "NUM-1.5")
@pytest.mark.ops("batch_norm")
@pytest.mark.requires("batch_norm_training")
@given(data=st.data())
def test_momentum_zero(adapter, op, dtype, device, data):
    """A new-batch weight alpha = 0 (momentum 1 in the old-value convention) is valid
    (ERR-1.6): training steps leave the running statistics as they were (BN-4.1)."""
    case = data.draw(cases_for(adapter, op=op, dtype=dtype, min_reduction=2, families=("dyadic_grid",)),
                     label="case")
    run_case(adapter, dataclasses.replace(case, momentum=0.0), device)


@pytest.mark.clauses("NORM-6")
# The interface's RMSNorm has no bias (RMS-3).
@pytest.mark.per_op("kind", lambda op: ["weight"] if op == "rms_norm" else ["weight", "bias"])
@given(data=st.data())
def test_weight_or_bias_alone(adapter, op, dtype, device, kind, data):
    """A weight without a bias (y = gamma x_hat) and a bias without a weight (y = x_hat + beta)."""
    case = data.draw(cases_for(adapter, op=op, dtype=dtype, min_reduction=2, affine=True), label="case")
    dropped = "bias" if kind == "weight" else "weight"
    run_case(adapter, dataclasses.replace(case, params={**case.params, dropped: None}), device)


_ONE_ELEMENT_EPS = st.sampled_from([1e-5, 1e-3])


@functools.lru_cache(maxsize=None)
def _one_element_shapes(op: str, channel_axis: int) -> st.SearchStrategy:
    """(shape, attrs) whose every slice has one element, for a batch of 1 and of 3 and 1 and 5
    channels (one, and a non-power of two) at every rank: a fixed set, smallest first, so that
    a JIT-compiled framework compiles each shape once (normspec.shape_pool's reason)."""
    shapes = []
    for batch, channels in itertools.product((1, 3), (1, 5)):
        if not OPS[op].has_channel_axis:
            shapes.append(((batch, channels, 1), {"normalized_shape": (1,)}))
            continue
        for rank in range(OPS[op].ranks[0], OPS[op].ranks[1] + 1):
            dims = [batch] + [1] * (rank - 2)
            dims.insert(1 if channel_axis == 1 else len(dims), channels)
            shapes.append((tuple(dims), {"num_groups": channels} if op == "group_norm" else {}))
    return st.sampled_from(sorted(shapes, key=lambda item: (int(np.prod(item[0])), item[0])))


@st.composite
def _one_element_slices(draw, adapter, *, op, dtype):
    """A case whose every slice has one element: LayerNorm/RMSNorm over a trailing axis of
    length 1, GroupNorm with one channel per group and no spatial extent, InstanceNorm
    with one spatial position."""
    np_dtype, axis = numpy_dtype(dtype), adapter.conventions.channel_axis
    shape, attrs = draw(_one_element_shapes(op, axis))
    params_shape = (shape[axis % len(shape)],) if OPS[op].has_channel_axis else (1,)
    rng = np.random.default_rng(draw(SEEDS))
    eps = draw(_ONE_ELEMENT_EPS)
    x = fill(rng, "dyadic_grid", shape, slice_ids(op, shape, attrs, axis), np_dtype, eps)
    params = {"weight": rng.uniform(0.5, 2, params_shape).astype(np_dtype),
              "bias": None if not OPS[op].has_bias else np.round(rng.uniform(-2, 2, params_shape), 2).astype(np_dtype)}
    if OPS[op].stateful:
        params.update(running_mean=None, running_var=None)
    return Case(op=op, dtype=dtype, inputs=[x], training=[True], eps=eps, attrs=attrs, params=params,
                channel_axis=axis, family="dyadic_grid")


@pytest.mark.clauses("NORM-5", "RMS-3", "NUM-3.2")
@pytest.mark.ops("layer_norm", "group_norm", "instance_norm", "rms_norm")
@given(data=st.data())
def test_one_element_slices(adapter, op, dtype, device, data):
    """A slice of one element: x_hat = 0 and y = beta for the centring ops (zero variance);
    y = gamma x / sqrt(x^2 + eps) for RMSNorm. (BatchNorm's one-value channel is BN-5.)"""
    case = data.draw(_one_element_slices(adapter, op=op, dtype=dtype), label="case")
    run_case(adapter, case, device,
             clause=ClauseRouting("NUM-1.1" if op == "rms_norm" else "NUM-3.2", nonfinite="NUM-3.1"))


_NON_FINITE_TARGETS = ("weight", "bias", "running_mean", "running_var")


@pytest.mark.clauses("NUM-4.3", "NUM-1.1")
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@given(data=st.data())
def test_non_finite_parameters(adapter, op, dtype, device, value, data):
    """One NaN or Inf in gamma, beta or a running statistic propagates as IEEE 754 arithmetic
    evaluates the defining formula, in its channel only (NUM-4.3); training outputs ignore
    the running statistics (BN-2)."""
    stateful = OPS[op].stateful
    case = data.draw(cases_for(adapter, op=op, dtype=dtype, min_reduction=2, families=("dyadic_grid",),
                               affine=True, running_stats=True if stateful else None), label="case")
    targets = [name for name in _NON_FINITE_TARGETS if case.params.get(name) is not None]
    target = data.draw(st.sampled_from(targets), label="parameter")
    assume(not (target == "running_var" and value == -np.inf))  # a negative variance is outside BN-3's domain
    array = case.params[target].copy()
    array.flat[data.draw(st.integers(0, array.size - 1), label="element")] = value
    run_case(adapter, dataclasses.replace(case, params={**case.params, target: array}), device,
             clause=ClauseRouting("NUM-1.1", nonfinite="NUM-4.3", propagation="NUM-4.3"))
