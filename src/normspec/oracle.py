"""The reference's answer for a case: the keyword arguments of the op's reference (and
VJP) for one step, its float64 result and Steps, and NUM-1.1's bound on the output."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from normspec import tolerance
from normspec.cases import Case
from normspec.dtypes import numpy_dtype
from normspec.registry import OPS, slice_ids


def reference_arguments(case: Case, running_mean, running_var, training: bool, steps_so_far: int,
                        estimator: str) -> dict:
    """The keyword arguments (all but x) of the op's reference, and of its `<op>_vjp`
    after dy, for one step of `case` from the given running statistics."""
    row, p = OPS[case.op], case.params
    arguments = dict(weight=p.get("weight"), eps=case.eps, **case.attrs)
    if row.has_channel_axis:
        arguments["channel_axis"] = case.channel_axis
    if row.has_bias:
        arguments["bias"] = p.get("bias")
    if row.stateful:
        arguments.update(running_mean=running_mean, running_var=running_var, momentum=case.momentum,
                         running_var_estimator=estimator)
    if case.op == "batch_norm":
        arguments.update(training=training, num_batches_tracked=steps_so_far)
    elif case.op == "instance_norm":
        arguments["use_input_stats"] = training or running_mean is None
    return arguments


class StatelessResult(NamedTuple):
    """The reference result of an op without running statistics, shaped like RunningResult."""

    output: np.ndarray
    running_mean: None = None
    running_var: None = None


def reference_step(case: Case, x, running_mean, running_var, training: bool, steps_so_far: int, estimator: str):
    """The reference's (float64) result and Steps for one step of `case`."""
    row = OPS[case.op]
    arguments = reference_arguments(case, running_mean, running_var, training, steps_so_far, estimator)
    result, steps = row.reference(x, **arguments, exact=True, return_steps=True)
    return (result if row.stateful else StatelessResult(result)), steps


def initial_state(case: Case):
    """The running statistics the first step of `case` starts from: the configured ones, or
    a fresh BatchNorm's mean 0 and variance 1 (BN-4.3); (None, None) for a layer without."""
    p = case.params
    mean, var = p.get("running_mean"), p.get("running_var")
    if case.op == "batch_norm" and mean is None:
        channels = case.shape[case.channel_axis]
        return np.zeros(channels), np.ones(channels)
    return mean, var


def affine_parameters(case: Case, ndim: int):
    """weight and bias as float64 arrays that broadcast against the input (None where absent)."""
    shape = [1] * ndim
    if OPS[case.op].has_channel_axis:
        shape[case.channel_axis] = -1

    def prepared(a):
        if a is None:
            return None
        a = a.astype(np.float64)
        return a.reshape(shape) if OPS[case.op].has_channel_axis else a
    return prepared(case.params.get("weight")), prepared(case.params.get("bias"))


def output_bound(case: Case, steps, output):
    """NUM-1.1's bound for the output of one step of `case`, from the reference's Steps."""
    weight, bias = affine_parameters(case, output.ndim)
    return tolerance.output_bound(steps, output, weight, bias, input_dtype=numpy_dtype(case.dtype))


def first_step_bound(case: Case, estimator: str = "biased") -> np.ndarray:
    """NUM-1.1's bound for the first step of `case` from its configured (or initial) state."""
    result, steps = reference_step(case, case.inputs[0], *initial_state(case), case.training[0], 0, estimator)
    return output_bound(case, steps, result.output)


def running_nan_allowed(old, alpha: float) -> np.ndarray:
    """NUM-4.3: a running statistic that is +-Inf before an update with alpha in [0, 1) may be
    NaN after it (the increment form: Inf + alpha (b - Inf) = NaN) as well as that infinity
    (the weighted forms), which is the reference's value."""
    return np.isinf(np.asarray(old, dtype=np.float64)) & (0 <= alpha < 1)


def nan_allowed(case: Case, x) -> np.ndarray | None:
    """NUM-4.2: in an RMSNorm slice holding +-Inf, a finite element may give NaN instead of beta."""
    if case.op != "rms_norm" or not np.isinf(x.astype(np.float64)).any():
        return None
    ids = slice_ids(case.op, x.shape, case.attrs, case.channel_axis)
    infinite_slices = np.unique(ids[np.isinf(x.astype(np.float64))])
    return np.isin(ids, infinite_slices)


def nonfinite_allowed(case: Case, steps) -> np.ndarray | None:
    """NUM-4.3: where gamma is infinite and the exact normalized value is within its error
    e_x_hat of 0 (NUM-1.1), the computed one may be 0 or either sign: NaN or +-Inf."""
    gamma, _ = affine_parameters(case, steps.normalized.ndim)
    if gamma is None or np.isfinite(gamma).all():
        return None
    with np.errstate(invalid="ignore"):
        near_zero = np.abs(steps.normalized) <= tolerance.normalized_error(steps, input_dtype=numpy_dtype(case.dtype))
    return np.broadcast_to(np.isinf(gamma), steps.normalized.shape) & near_zero
