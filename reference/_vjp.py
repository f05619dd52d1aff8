"""The backward steps every normalization shares (spec clauses GRAD-1 .. GRAD-5).

Like _steps.py for the forward: each op's `<op>_vjp` runs its forward reference for
the Steps (so the forward's checks and named steps apply unchanged), and `vjp`
below maps the per-element values to the op's slices (S, n), applies GRAD-3,
GRAD-4 or GRAD-5 there, and sums the parameter gradients of GRAD-2. Everything is
float64; results are rounded once, as the forward's are (GRAD-8.2).
"""
from __future__ import annotations

import inspect

import numpy as np

from normspec.errors import ConfigurationError

from . import _validate
from ._steps import Steps


def forward_arguments(forward, x, args: tuple, kwargs: dict) -> dict:
    """The forward's arguments by name, defaults filled in, so that a VJP takes exactly
    what its forward takes; a wrong argument raises the forward's TypeError."""
    bound = inspect.signature(forward).bind(x, *args, **kwargs)
    bound.apply_defaults()
    return {name: value for name, value in bound.arguments.items() if name not in ("exact", "return_steps")}


def input_gradient(g: np.ndarray, normalized: np.ndarray, inverse_std: np.ndarray, *,
                   center: bool = True) -> np.ndarray:
    """GRAD-3 (centring ops) and, with center=False, GRAD-4 (RMSNorm) on slices (S, n):
    dx = r (g - mean(g) - x_hat mean(g x_hat)), g = gamma dy, `inverse_std` r of shape (S, 1)."""
    if center:
        # g - mean(g) from a two-part mean, as NORM-1 and NORM-2 centre x, so that a
        # large common part of dy costs no accuracy.
        first = g.mean(axis=1, keepdims=True)
        residual = g - first
        g = residual - residual.mean(axis=1, keepdims=True)
    # Centring g leaves mean(g x_hat) unchanged (sum(x_hat) = 0, NORM-5) and shrinks its terms.
    projection = np.mean(g * normalized, axis=1, keepdims=True)
    return inverse_std * (g - normalized * projection)


def frozen_input_gradient(g: np.ndarray, inverse_std: np.ndarray) -> np.ndarray:
    """GRAD-5: the gradient of the frozen affine map, dx = gamma r dy; nothing flows
    through the running statistics."""
    return g * inverse_std


def parameter_sum(values: np.ndarray, parameter_axes: tuple) -> np.ndarray:
    """GRAD-2: the sum over every axis but the parameter's, with the parameter's
    shape; each sum runs along one contiguous row (NumPy sums those pairwise)."""
    k = len(parameter_axes)
    moved = np.moveaxis(values, parameter_axes, tuple(range(k)))
    return moved.reshape(moved.shape[:k] + (-1,)).sum(axis=-1)


def vjp(x, dy, weight, bias, steps: Steps, *, slice_map, parameter_axes: tuple, center: bool = True,
        frozen: bool = False, exact: bool = False) -> dict:
    """dx, dgamma, dbeta of one op call (GRAD-1 .. GRAD-5).

    `steps` are the forward reference's per-element Steps in the input layout;
    `slice_map(a)` returns the slices (S, n) of an input-layout array and the map
    back (channel_slices, or a reshape); the parameters span `parameter_axes` of x.
    `frozen` selects GRAD-5 (running statistics) instead of GRAD-3/GRAD-4.
    """
    x = np.asarray(x)
    dy = _validate.input_array(dy, "dy")
    if dy.shape != x.shape:
        raise ConfigurationError("GRAD-1", f"dy has shape {dy.shape}; it needs the shape of x, {x.shape}.")
    dy = dy.astype(np.float64)
    parameter_shape = [x.shape[a] if a in parameter_axes else 1 for a in range(x.ndim)]
    g = dy if weight is None else dy * np.asarray(weight, dtype=np.float64).reshape(parameter_shape)
    if frozen:
        dx = frozen_input_gradient(g, steps.inverse_std)
    else:
        g_slices, to_input = slice_map(g)
        dx = to_input(input_gradient(g_slices, slice_map(steps.normalized)[0],
                                     slice_map(steps.inverse_std)[0][:, :1], center=center))
    dweight = None if weight is None else _validate.rounded(
        parameter_sum(dy * steps.normalized, parameter_axes), np.asarray(weight).dtype, exact)
    dbias = None if bias is None else _validate.rounded(parameter_sum(dy, parameter_axes),
                                                         np.asarray(bias).dtype, exact)
    return {"x": _validate.rounded(dx, x.dtype, exact), "weight": dweight, "bias": dbias}


def trailing_axes_vjp(x, dy, normalized_shape, weight, bias, steps: Steps, *, op: str, center: bool,
                      exact: bool) -> dict:
    """`vjp` for the ops that normalize the trailing len(normalized_shape) axes (LayerNorm,
    RMSNorm): each leading index is one slice, the parameters span the trailing axes."""
    ndim, k = np.ndim(x), len(_validate.normalized_shape_value(np.asarray(x), normalized_shape, op))
    return vjp(x, dy, weight, bias, steps, slice_map=lambda a: (a.reshape(-1, steps.reduction_length),
                                                                lambda s: s.reshape(a.shape)),
               parameter_axes=tuple(range(ndim - k, ndim)), center=center, exact=exact)
