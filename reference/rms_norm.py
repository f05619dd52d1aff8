"""RMSNorm, spec section RMS (spec/ops/rms_norm.md)."""
from __future__ import annotations

import numpy as np

from . import _validate, _vjp
from ._steps import affine, normalize_slices, trailing_slices


def rms_norm(x, normalized_shape, weight=None, bias=None, *, eps: float, exact: bool = False,
             return_steps: bool = False):
    """RMSNorm over the trailing len(normalized_shape) axes (RMS-1 .. RMS-3).

    No centring: the mean square replaces the variance, eps stays inside the
    square root. `bias` is optional and absent in most frameworks (RMS-3).
    Returns the output, and the Steps with `return_steps`.
    """
    x, shape, weight, bias, eps = _validate.trailing_arguments(x, normalized_shape, weight, bias, eps, "rms_norm")
    slices, to_input = trailing_slices(x, shape)
    _validate.nonempty(slices.shape[1], "rms_norm", x.shape)
    steps = normalize_slices(slices, eps, center=False).per_element(to_input)  # RMS-2
    output = _validate.rounded(affine(steps.normalized, weight, bias), x.dtype, exact)  # RMS-3
    return (output, steps) if return_steps else output


def rms_norm_vjp(x, dy, normalized_shape, weight=None, bias=None, *, eps: float, exact: bool = False):
    """The VJP of `rms_norm` (GRAD-1): GRAD-4 over the LN-2 slices, GRAD-2 over the
    leading axes. Returns {"x", "weight", "bias"} (None for an absent parameter)."""
    _, steps = rms_norm(x, normalized_shape, weight, bias, eps=eps, exact=True, return_steps=True)
    return _vjp.trailing_axes_vjp(x, dy, normalized_shape, weight, bias, steps, op="rms_norm", center=False,
                                  exact=exact)
