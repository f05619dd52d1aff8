"""BatchNorm, spec section BN (spec/ops/batch_norm.md)."""
from __future__ import annotations

import numpy as np

from . import _running, _validate, _vjp
from ._steps import affine, channel_slices, normalize_slices


def batch_norm(
    x,
    weight=None,
    bias=None,
    running_mean=None,
    running_var=None,
    *,
    training: bool,
    momentum: float | None = 0.1,
    eps: float,
    channel_axis: int = 1,
    running_var_estimator: str = "unbiased",
    num_batches_tracked: int = 0,
    exact: bool = False,
    return_steps: bool = False,
):
    """BatchNorm over inputs of rank 2 to 5 (BN-1), per channel.

    Training (BN-2) normalizes with the batch statistics over every axis but the
    channel axis and updates the running statistics (BN-4.1 with new-batch weight
    alpha = `momentum`; BN-4.2 cumulative average when `momentum` is None; the
    initial state of BN-4.3 when they are None; the estimator of BN-4.4).
    Evaluation (BN-3) applies the frozen affine map of the running statistics and
    returns them unchanged. Returns a RunningResult, and the Steps with `return_steps`.
    """
    x = _validate.input_array(x)
    axis = _validate.channel_axis_index(x, channel_axis, min_rank=2, max_rank=5, op="batch_norm")
    eps = _validate.eps_value(eps)
    momentum = _validate.momentum_value(momentum)
    channels = x.shape[axis]
    state_dtype = x.dtype if running_mean is None else _validate.input_array(running_mean, "running_mean").dtype
    _running.state_pair(running_mean, running_var, op="batch_norm")
    weight, bias, running_mean, running_var = (
        _validate.parameter(value, (channels,), name, "batch_norm")
        for value, name in ((weight, "weight"), (bias, "bias"),
                            (running_mean, "running_mean"), (running_var, "running_var"))
    )
    slices, to_input = channel_slices(x.astype(np.float64), axis)
    _validate.nonempty(slices.shape[1], "batch_norm", x.shape)
    if training:
        if running_mean is None:  # BN-4.3: a fresh layer's state
            running_mean, running_var = np.zeros(channels), np.ones(channels)
        steps = normalize_slices(slices, eps)  # BN-2
        batch_var = _running.estimator_variance(steps.variance[:, 0], steps.reduction_length, running_var_estimator)
        running_mean = _running.update(running_mean, steps.mean[:, 0], momentum, num_batches_tracked)
        running_var = _running.update(running_var, batch_var, momentum, num_batches_tracked)
        num_batches_tracked += 1
    else:
        steps = _running.frozen_steps(slices, running_mean, running_var, eps, op="batch_norm")  # BN-3
    steps = steps.per_element(to_input)
    output = affine(steps.normalized, weight, bias, axis)
    result = _running.RunningResult.rounded(output, running_mean, running_var, num_batches_tracked,
                                            output_dtype=x.dtype, state_dtype=state_dtype, exact=exact)
    return (result, steps) if return_steps else result


def batch_norm_vjp(x, dy, *args, exact: bool = False, **kwargs):
    """The VJP of `batch_norm` for the cotangent `dy` of its output (GRAD-1).

    Takes `dy` after x, then batch_norm's other arguments (and rejects what it rejects).
    Training: GRAD-3 through the batch statistics of each channel; evaluation: GRAD-5
    with the running statistics. dgamma and dbeta by GRAD-2. Returns {"x", "weight",
    "bias"}, None for an absent parameter, in the dtypes of GRAD-8.2 unless `exact`.
    """
    forward = _vjp.forward_arguments(batch_norm, x, args, kwargs)
    _, steps = batch_norm(**forward, exact=True, return_steps=True)
    axis = forward["channel_axis"] % np.ndim(x)
    return _vjp.vjp(x, dy, forward["weight"], forward["bias"], steps, slice_map=lambda a: channel_slices(a, axis),
                    parameter_axes=(axis,), frozen=not forward["training"], exact=exact)
