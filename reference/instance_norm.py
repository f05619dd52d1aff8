"""InstanceNorm, spec section IN (spec/ops/instance_norm.md)."""
from __future__ import annotations

import numpy as np

from . import _running, _validate, _vjp
from ._steps import affine, channel_slices, normalize_slices


def instance_norm(
    x,
    weight=None,
    bias=None,
    running_mean=None,
    running_var=None,
    *,
    use_input_stats: bool = True,
    momentum: float | None = 0.1,
    eps: float,
    channel_axis: int = 1,
    running_var_estimator: str = "unbiased",
    exact: bool = False,
    return_steps: bool = False,
):
    """InstanceNorm (IN-1, IN-2): each (sample, channel) pair is one slice over the
    spatial positions; inputs of rank 3 to 5.

    With running statistics (IN-3), `use_input_stats=True` also updates them with the
    batch average of the instance statistics (the estimator of BN-4.4 per instance),
    and `use_input_stats=False` applies the frozen map of BN-3.
    Returns a RunningResult, and the Steps with `return_steps`.
    """
    x = _validate.input_array(x)
    axis = _validate.channel_axis_index(x, channel_axis, min_rank=3, max_rank=5, op="instance_norm")
    eps = _validate.eps_value(eps)
    momentum = _validate.momentum_value(momentum)
    batch, channels = x.shape[0], x.shape[axis]
    state_dtype = x.dtype if running_mean is None else _validate.input_array(running_mean, "running_mean").dtype
    _running.state_pair(running_mean, running_var, op="instance_norm")
    if running_mean is not None and momentum is None:
        raise _validate.ConfigurationError(
            "ERR-1.6", "instance_norm: running statistics need a new-batch weight alpha in [0, 1]; "
                       "the cumulative average (BN-4.2) is not defined for InstanceNorm (IN-3).")
    weight, bias, running_mean, running_var = (
        _validate.parameter(value, (channels,), name, "instance_norm")
        for value, name in ((weight, "weight"), (bias, "bias"),
                            (running_mean, "running_mean"), (running_var, "running_var"))
    )
    slices, to_input = channel_slices(x.astype(np.float64), axis, 1)
    _validate.nonempty(slices.shape[1], "instance_norm", x.shape)
    if use_input_stats:
        steps = normalize_slices(slices, eps)  # IN-2
        if running_mean is not None:  # IN-3
            instance_var = _running.estimator_variance(steps.variance[:, 0], steps.reduction_length,
                                                       running_var_estimator)
            running_mean = _running.update(running_mean, steps.mean[:, 0].reshape(batch, channels).mean(0),
                                           momentum, 0)
            running_var = _running.update(running_var, instance_var.reshape(batch, channels).mean(0), momentum, 0)
    else:
        steps = _running.frozen_steps(
            slices, None if running_mean is None else np.tile(running_mean, batch),
            None if running_var is None else np.tile(running_var, batch), eps, op="instance_norm")  # IN-3
    steps = steps.per_element(to_input)
    output = affine(steps.normalized, weight, bias, axis)
    result = _running.RunningResult.rounded(output, running_mean, running_var, 0,
                                            output_dtype=x.dtype, state_dtype=state_dtype, exact=exact)
    return (result, steps) if return_steps else result


def instance_norm_vjp(x, dy, *args, exact: bool = False, **kwargs):
    """The VJP of `instance_norm` (GRAD-1), with `dy` after x, then instance_norm's other
    arguments: GRAD-3 over the IN-2 slices with instance statistics, GRAD-5 with the
    running statistics (`use_input_stats=False`, IN-3), GRAD-2 per channel.
    Returns {"x", "weight", "bias"} (None for an absent parameter)."""
    forward = _vjp.forward_arguments(instance_norm, x, args, kwargs)
    _, steps = instance_norm(**forward, exact=True, return_steps=True)
    axis = forward["channel_axis"] % np.ndim(x)
    return _vjp.vjp(x, dy, forward["weight"], forward["bias"], steps, slice_map=lambda a: channel_slices(a, axis, 1),
                    parameter_axes=(axis,), frozen=not forward["use_input_stats"], exact=exact)
