"""GroupNorm, spec section GN (spec/ops/group_norm.md)."""
from __future__ import annotations

import numpy as np

from . import _validate, _vjp
from ._steps import affine, channel_slices, normalize_slices
from normspec.errors import ConfigurationError


def group_norm(x, num_groups: int, weight=None, bias=None, *, eps: float, channel_axis: int = 1,
               exact: bool = False, return_steps: bool = False):
    """GroupNorm (GN-1, GN-2): per sample, each of `num_groups` contiguous blocks of
    C / num_groups channels is one slice with all its spatial positions.

    weight and bias are per channel (C,). Returns the output, and the Steps with `return_steps`.
    """
    x = _validate.input_array(x)
    axis = _validate.channel_axis_index(x, channel_axis, min_rank=2, max_rank=5, op="group_norm")
    eps = _validate.eps_value(eps)
    channels = x.shape[axis]
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)) or num_groups < 1 \
            or channels % num_groups:
        raise ConfigurationError(
            "ERR-1.4", f"group_norm: {channels} channels cannot be split into num_groups={num_groups!r} "
                       f"equal contiguous groups; choose a divisor of {channels}.")
    weight = _validate.parameter(weight, (channels,), "weight", "group_norm")
    bias = _validate.parameter(bias, (channels,), "bias", "group_norm")
    slices, to_input = channel_slices(x.astype(np.float64), axis, channels // num_groups)
    _validate.nonempty(slices.shape[1], "group_norm", x.shape)
    steps = normalize_slices(slices, eps).per_element(to_input)  # GN-2
    output = _validate.rounded(affine(steps.normalized, weight, bias, axis), x.dtype, exact)
    return (output, steps) if return_steps else output


def group_norm_vjp(x, dy, num_groups: int, weight=None, bias=None, *, eps: float, channel_axis: int = 1,
                   exact: bool = False):
    """The VJP of `group_norm` (GRAD-1): GRAD-3 over the GN-2 slices, GRAD-2 per
    channel. Returns {"x", "weight", "bias"} (None for an absent parameter)."""
    _, steps = group_norm(x, num_groups, weight, bias, eps=eps, channel_axis=channel_axis, exact=True,
                          return_steps=True)
    axis = channel_axis % np.ndim(x)
    per_group = np.shape(x)[axis] // num_groups
    return _vjp.vjp(x, dy, weight, bias, steps, slice_map=lambda a: channel_slices(a, axis, per_group),
                    parameter_axes=(axis,), exact=exact)
