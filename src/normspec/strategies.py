"""Hypothesis strategies for normalization test cases.

`cases(op=..., dtype=..., channel_axis=...)` draws a Case: a shape from the op's
shape pool (normspec.shape_pool: reduction lengths of 1, of non-powers of two and
longer than 64); parameters; and values from one of the value families below.
Hypothesis draws the shape, family and scales, and a seed from which NumPy fills
the values, so that a failure shrinks to a small shape and a simple family (the
values are printed in the repro). Every draw is a flat integer or choice: nested
list and one_of draws cost more than most framework calls.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

from normspec import shape_pool
from normspec.cases import Case
from normspec.dtypes import DTYPES, numpy_dtype
from normspec.run import CURRENT
from normspec.registry import OPS, slice_ids

FAMILIES = ("well_conditioned", "dyadic_grid", "exact_statistics", "large_offset", "spread_near_eps", "extreme_magnitude",
            "constant_slices")


def _validate_op_and_axis(op: str, channel_axis: int) -> None:
    if op not in OPS:
        raise ValueError(f"op={op!r} is not one of {sorted(OPS)}; pass an op name from normspec.registry.OPS")
    if channel_axis not in (1, -1):
        raise ValueError(f"channel_axis={channel_axis!r} must be 1 (channels first) or -1 (channels last)")


def _validate(op: str, dtype: str, channel_axis: int, families) -> None:
    _validate_op_and_axis(op, channel_axis)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {', '.join(DTYPES)}")
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"families {sorted(unknown)} unknown; choose from {FAMILIES}")


def shapes(*, op: str, channel_axis: int = 1, min_reduction: int = 1):
    """A (shape, attrs) for `op` from its shape pool (normspec.shape_pool): reduction
    lengths of 1, non-powers of two and longer than 64, every rank; attrs holds
    normalized_shape or num_groups. min_reduction=2 keeps every slice at two or more
    elements (BN-5 is tested apart). Shrinks toward the pool's smallest shape."""
    _validate_op_and_axis(op, channel_axis)
    return _pool_choice(op, channel_axis, min_reduction, CURRENT.settings.shape_pool_size)


@lru_cache(maxsize=None)
def _pool_choice(op: str, channel_axis: int, min_reduction: int, pool_size: int):
    return st.sampled_from(shape_pool.pool(op, channel_axis=channel_axis, min_reduction=min_reduction,
                                           pool_size=pool_size))


@lru_cache(maxsize=None)
def _choice(options: tuple):
    """One strategy object per choice list: Hypothesis validates a strategy on its first draw,
    so a strategy built anew for every draw would pay that every time."""
    return st.sampled_from(options)


SEEDS = st.integers(0, 2**32 - 1)  # the seed of a case's NumPy generator (tests that build their own cases use it too)
_BOOLEAN, _STEPS = st.booleans(), st.integers(1, 4)
_EPS = (1e-5, 1e-3, 1e-6)
_MOMENTA = (0.1, 0.01, 0.5, 1.0)


def _exact_statistics(rng, ids: np.ndarray, dtype) -> np.ndarray:
    """NUM-1.4: each slice is mean + a*(+1 / -1 balanced, one 0 if odd), mean and a small
    integers times a power of two, so sums are exact in float32 in any order."""
    flat = ids.ravel()
    order = np.lexsort((rng.random(flat.size), flat))
    sorted_ids = flat[order]
    starts = np.searchsorted(sorted_ids, sorted_ids, side="left")
    counts = np.bincount(sorted_ids)[sorted_ids]
    rank = np.arange(flat.size) - starts
    half = counts // 2
    signs = np.where(rank < half, 1.0, np.where(rank < 2 * half, -1.0, 0.0))
    n_slices = int(flat.max()) + 1
    precision_bits = 7 if dtype == np.dtype(ml_dtypes.bfloat16) else 10
    scale = 2.0 ** rng.integers(-4, 3)
    centre = rng.integers(-(2 ** (precision_bits - 2)), 2 ** (precision_bits - 2), n_slices) * scale
    spread = rng.integers(1, 2 ** (precision_bits - 3), n_slices) * scale
    values = np.empty(flat.size)
    values[order] = centre[sorted_ids] + spread[sorted_ids] * signs
    return values.reshape(ids.shape)


def fill(rng, family: str, shape: tuple, ids: np.ndarray, dtype, eps: float) -> np.ndarray:
    """Values of one family, rounded to `dtype`."""
    info = ml_dtypes.finfo(dtype)
    if family == "exact_statistics":
        return _exact_statistics(rng, ids, dtype).astype(dtype)
    z = np.round(rng.standard_normal(shape), 2)
    n = max(1, int(np.bincount(ids.ravel()).max()))
    if family == "well_conditioned":
        values = z * 2.0 ** rng.integers(-3, 4)
    elif family == "dyadic_grid":
        # k / 16 with |k| <= 64: exact in every dtype, and so are shifts by such values
        # and scalings by powers of two (the invariance laws rely on that).
        values = rng.integers(-64, 65, shape) / 16.0
    elif family == "large_offset":
        # offset / spread up to 1e4 in float32/64, limited so the spread survives rounding in half precision.
        ratio = 10.0 ** rng.uniform(1, 2 if info.bits == 16 else 4)
        values = rng.choice([-1, 1]) * ratio + z
    elif family == "spread_near_eps":
        values = rng.uniform(-2, 2) + z * np.sqrt(eps) * 10.0 ** rng.uniform(-1, 1)
    elif family == "extreme_magnitude":
        # Largest magnitude whose squares summed over a slice stay finite in the compute
        # precision (NUM-1.3), or numbers near the smallest normal (subnormals included).
        compute_max = float(ml_dtypes.finfo(np.float32 if info.bits <= 32 else np.float64).max)
        big = min(float(info.max) / 4, np.sqrt(compute_max / (4 * n)))
        values = z * (big / 8 if rng.random() < 0.5 else float(info.smallest_normal) * 64)
    elif family == "constant_slices":
        values = rng.uniform(-1000, 1000) * np.ones(shape) + (rng.uniform(-1, 1, int(ids.max()) + 1)[ids] * 100)
    else:
        raise ValueError(f"family={family!r} unknown; choose from {FAMILIES}")
    return values.astype(dtype)


@st.composite
def cases(draw, *, op: str, dtype: str, channel_axis: int = 1, families=FAMILIES, affine=None,
          running_stats=None, steps=None, cumulative: bool = False, min_reduction: int = 1,
          param_dtype: str | None = None):
    """A Case for `op` in `dtype`: shape, parameters, steps and values.

    param_dtype: the dtype of the affine parameters and running statistics (NUM-2.3), None for
    `dtype`'s.

    affine: None draws it; True/False forces weight and bias. running_stats: for
    stateful ops, None draws fresh/loaded state (instance_norm: tracked or not).
    steps: the list of training flags, or None to draw 1 to 4 steps (stateless: 1).
    cumulative allows momentum None (BN-4.2) when the adapter supports it.
    """
    _validate(op, dtype, channel_axis, families)
    if param_dtype is not None and param_dtype not in DTYPES:
        raise ValueError(f"param_dtype={param_dtype!r} is not one of {', '.join(DTYPES)} (NUM-2.3)")
    CURRENT.counters.cases_drawn += 1
    row, np_dtype = OPS[op], numpy_dtype(dtype)
    parameter_dtype = numpy_dtype(param_dtype or dtype)
    shape, attrs = draw(shapes(op=op, channel_axis=channel_axis, min_reduction=min_reduction))
    family = draw(_choice(tuple(families)))
    rng = np.random.default_rng(draw(SEEDS))
    eps = draw(_choice(_EPS))
    ids = slice_ids(op, shape, attrs, channel_axis)
    if steps is None:
        steps = [True] if not row.stateful else [draw(_BOOLEAN) for _ in range(draw(_STEPS))]
    inputs = [fill(rng, family, shape, ids, np_dtype, eps) for _ in steps]
    params_shape = attrs.get("normalized_shape") or (shape[channel_axis],)
    with_affine = draw(_BOOLEAN) if affine is None else affine
    params = {}
    if with_affine:
        params["weight"] = (rng.uniform(0.5, 2, params_shape) * rng.choice([-1, 1], params_shape)).astype(parameter_dtype)
        # The adapter interface's RMSNorm has no bias: most frameworks have none (RMS-3).
        bias = np.round(rng.uniform(-2, 2, params_shape), 2).astype(parameter_dtype)
        params["bias"] = bias if row.has_bias else None
    else:
        params["weight"] = params["bias"] = None
    if row.stateful:
        loaded = draw(_BOOLEAN) if running_stats is None else running_stats
        channels = shape[channel_axis]
        params["running_mean"] = np.round(rng.uniform(-2, 2, channels), 2).astype(parameter_dtype) if loaded else None
        params["running_var"] = np.round(rng.uniform(0.25, 4, channels), 2).astype(parameter_dtype) if loaded else None
    cumulative = cumulative and op == "batch_norm"  # BN-4.2 is BatchNorm's alone (IN-3)
    momentum = draw(_choice(_MOMENTA + ((None,) if cumulative else ())))
    return Case(op=op, dtype=dtype, inputs=inputs, training=list(steps), eps=eps, attrs=attrs, params=params,
                momentum=momentum, channel_axis=channel_axis, exact_statistics=_exact(op, family), family=family,
                param_dtype=None if param_dtype in (None, dtype) else param_dtype)


def _exact(op: str, family: str) -> bool:
    """NUM-1.4 applies where the sums are exact: RMSNorm sums x^2 of uncentred values, whose
    partial sums can exceed float32's 24 bits here, so it keeps the general bound."""
    return family == "exact_statistics" and op != "rms_norm"


def cases_for(adapter, *, op: str, dtype: str, **options):
    """`cases` within what `adapter` declares: its layout, whether BatchNorm trains,
    cumulative averages and InstanceNorm running statistics (Capabilities).
    One strategy object per adapter and arguments (`_memo`)."""
    return _memo(_cases_for, adapter, op=op, dtype=dtype, **options)


def _cases_for(adapter, *, op: str, dtype: str, **options):
    caps = adapter.capabilities
    options.setdefault("channel_axis", adapter.conventions.channel_axis)
    options.setdefault("cumulative", caps.cumulative_average)
    if op == "instance_norm" and not caps.instance_norm_running_stats:
        options["running_stats"] = False
    if op == "batch_norm" and not caps.batch_norm_training:
        options["running_stats"] = True
        options.setdefault("steps", [False])
    return cases(op=op, dtype=dtype, **options)


_STRATEGIES: dict = {}


def _memo(build, adapter, **arguments):
    """build(adapter, **arguments), built once per adapter and arguments. The tests draw their
    case strategy in every example, and a strategy built anew pays Hypothesis's validation
    and labelling each time (docs/benchmarks.md). The same strategy draws the same examples."""
    key = (build, adapter, tuple(sorted((name, _hashable(value)) for name, value in arguments.items())))
    strategy = _STRATEGIES.get(key)
    if strategy is None:
        strategy = _STRATEGIES[key] = build(adapter, **arguments)
    return strategy


def _hashable(value):
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


def long_slice_case(adapter, *, op: str, dtype: str, family: str, length: int = 4096, seed: int = 0,
                    rows: int = 1) -> Case:
    """One slice of `length` elements (NUM-2.1): long enough that a float16 or bfloat16
    accumulator loses the statistics, in the adapter's layout. LayerNorm and RMSNorm take
    `rows` slices (rows > 1 makes long sums over the leading axis: GRAD-2's parameter sums)."""
    channel_axis = adapter.conventions.channel_axis
    if not OPS[op].has_channel_axis:
        shape, attrs = (rows, length), {"normalized_shape": (length,)}
    else:
        side = int(np.sqrt(length))
        batch, positions = (side, length // side) if op == "batch_norm" else (1, length)
        shape = (batch, 1, positions) if channel_axis == 1 else (batch, positions, 1)
        attrs = {"num_groups": 1} if op == "group_norm" else {}
    np_dtype = numpy_dtype(dtype)
    ids = slice_ids(op, shape, attrs, channel_axis)
    x = fill(np.random.default_rng(seed), family, shape, ids, np_dtype, 1e-5)
    params = {"weight": None, "bias": None}
    if OPS[op].stateful:
        params.update(running_mean=None, running_var=None)
    return Case(op=op, dtype=dtype, inputs=[x], training=[True], eps=1e-5, attrs=attrs, params=params,
                momentum=0.1, channel_axis=channel_axis, exact_statistics=_exact(op, family), family=family)


COTANGENTS = ("gaussian", "common_offset", "ones")


def cotangent(rng, kind: str, shape: tuple, dtype) -> np.ndarray:
    """dy of a backward case, rounded to `dtype`: Gaussian; a large common offset over a
    small spread (mean(g) then cancels, GRAD-3); all ones (the gradient of sum(y), for
    which dx of an op without weight is exactly 0); or "near_one", 1 + z/16, whose sums
    over the 4096 elements of the GRAD-8.1 test stay within float16's range."""
    z = np.round(rng.standard_normal(shape), 2)
    if kind == "gaussian":
        values = z * 2.0 ** rng.integers(-2, 3)
    elif kind == "common_offset":
        values = rng.choice([-1, 1]) * 10.0 ** rng.uniform(1, 3) + z
    elif kind == "ones":
        values = np.ones(shape)
    elif kind == "near_one":  # long sums stay representable (4096 elements sum to about 4096)
        values = 1.0 + z / 16
    else:
        raise ValueError(f"kind={kind!r} unknown; choose from {COTANGENTS + ('near_one',)}")
    return values.astype(dtype)


def backward_cases(adapter, *, op: str, dtype: str, **options):
    """A one-step Case with a cotangent (`_backward_cases`), one strategy object per adapter and
    arguments (`_memo`)."""
    return _memo(_backward_cases, adapter, op=op, dtype=dtype, **options)


@st.composite
def _backward_cases(draw, adapter, *, op: str, dtype: str, training=None, **options):
    """A one-step Case with a cotangent (normspec.backward), within what `adapter` declares.

    training: None draws it for BatchNorm and InstanceNorm (evaluation BatchNorm gets
    loaded running statistics, GRAD-5); the other options go to `cases`.
    """
    stateful = OPS[op].stateful
    if training is None:
        training = draw(_BOOLEAN) if stateful else True
    if op == "batch_norm" and not adapter.capabilities.batch_norm_training:
        training = False
    if op == "batch_norm" and not training:
        options["running_stats"] = True
    options.setdefault("min_reduction", 2)
    case = draw(cases_for(adapter, op=op, dtype=dtype, steps=[bool(training)], **options))
    kind = draw(_choice(COTANGENTS), label="cotangent")
    rng = np.random.default_rng(draw(SEEDS, label="cotangent seed"))
    return dataclasses.replace(case, cotangent=cotangent(rng, kind, case.shape, numpy_dtype(dtype)))
