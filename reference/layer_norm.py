"""LayerNorm, spec section LN (spec/ops/layer_norm.md)."""
from __future__ import annotations

import numpy as np

from . import _validate, _vjp
from ._steps import affine, normalize_slices, trailing_slices


def layer_norm(x, normalized_shape, weight=None, bias=None, *, eps: float, exact: bool = False,
               return_steps: bool = False):
    """LayerNorm over the trailing len(normalized_shape) axes (LN-1, LN-2).

    Each leading index is one slice; weight and bias have shape normalized_shape
    (NORM-6). Returns the output, and the Steps with `return_steps`.
    """
    x, shape, weight, bias, eps = _validate.trailing_arguments(x, normalized_shape, weight, bias, eps, "layer_norm")
    slices, to_input = trailing_slices(x, shape)
    _validate.nonempty(slices.shape[1], "layer_norm", x.shape)
    steps = normalize_slices(slices, eps).per_element(to_input)  # LN-2
    output = _validate.rounded(affine(steps.normalized, weight, bias), x.dtype, exact)
    return (output, steps) if return_steps else output


def layer_norm_vjp(x, dy, normalized_shape, weight=None, bias=None, *, eps: float, exact: bool = False):
    """The VJP of `layer_norm` (GRAD-1): GRAD-3 over the LN-2 slices, GRAD-2 over the
    leading axes. Returns {"x", "weight", "bias"} (None for an absent parameter)."""
    _, steps = layer_norm(x, normalized_shape, weight, bias, eps=eps, exact=True, return_steps=True)
    return _vjp.trailing_axes_vjp(x, dy, normalized_shape, weight, bias, steps, op="layer_norm", center=True,
                                  exact=exact)
