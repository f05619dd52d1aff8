"""Production configurations: a fixed, named table of the shapes real models run, per op, and
the cases that run each once (tests/conformance/test_production_shapes.py).

The shape pools (normspec.shape_pool) stay small so that every property can draw hundreds
of examples from them, and so never reach the sizes where kernels change algorithm: a
one-pass variance for long rows, a group count capped at a kernel's limit, channels past a
block of 64. This table holds a few such configurations per op, in channels-first form
(`case` moves the channel axis to the adapter's layout), each at most about 300,000
elements so that the float64 reference stays cheap.

Every case has two value recipes, both with statistics that differ from slice to slice, so
that an element normalized with another slice's statistics is far outside the bound:

- "large_offset": each slice its own offset, up to the large-offset family's ratio (10^4 in
  float32 and float64, 10^2 in half precision: normspec.strategies.fill), over its own
  spread; this is where a variance formula that cancels (E[x^2] - E[x]^2) fails NUM-1.1.
- "distinct_slices": each slice its own mean and spread and a trend along its elements, so
  that any part of a slice has other statistics than the whole (a reduction over too few
  axes shows).

BatchNorm gets loaded running statistics of each channel's own: its mean moved by half its
standard deviation and twice its variance, so that a read of another channel's statistics in
evaluation shows, and so that the training step moves every running variance by about 5%, which
even bfloat16 resolves (an update skipped for some channels shows; loaded statistics equal to the
batch's own would hardly move).

The table is not part of the pools, not even the thorough profile's: a pool shape is drawn by
every property at every example (1,000 per test in `thorough`), and shapes a hundred times
the pools' largest would multiply the run's time (and a JIT framework's compilations) for
the same few configurations this table runs deterministically in every profile.
"""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np

from normspec.cases import Case
from normspec.dtypes import numpy_dtype
from normspec.registry import OPS, slice_ids
from normspec.strategies import cotangent

# name -> (shape, attrs). Rows of transformer widths (BERT 768 to 8192, and GPT-3's 12288, a
# non-power of two above 10,000); a prime width above 10,000, which no vector width divides, so that
# a long-row path that drops or misreads the tail of a row shows; normalized_shape of three axes on
# a rank-4 input (the input's rank minus one).
_ROWS = {
    "rows_768": ((2, 4, 768), {"normalized_shape": (768,)}),
    "rows_1024": ((4, 1024), {"normalized_shape": (1024,)}),
    "rows_4096": ((2, 4096), {"normalized_shape": (4096,)}),
    "rows_5120": ((2, 5120), {"normalized_shape": (5120,)}),
    "rows_8192": ((1, 8192), {"normalized_shape": (8192,)}),
    "rows_12288": ((1, 12288), {"normalized_shape": (12288,)}),
    "rows_10007": ((1, 10007), {"normalized_shape": (10007,)}),
    "normalized_3d": ((2, 8, 16, 32), {"normalized_shape": (8, 16, 32)}),
}

TABLE = {
    "layer_norm": _ROWS,
    "rms_norm": _ROWS,
    # ResNet-style 32 groups of 256 channels; more than 32 groups (64 of 512); one channel per
    # group past 64 channels; a 3-D (video) input with 128 groups; a diffusion U-Net's 64x64 stage
    # with 32 groups (narrowed to 64 channels), whose groups of 8,192 elements are more than one
    # block of a kernel that loads a group in one pass.
    "group_norm": {
        "groups_32_of_256": ((2, 256, 14, 14), {"num_groups": 32}),
        "groups_64_of_512": ((2, 512, 7, 7), {"num_groups": 64}),
        "groups_128_of_128": ((2, 128, 8, 8), {"num_groups": 128}),
        "groups_128_of_512_3d": ((1, 512, 4, 4, 4), {"num_groups": 128}),
        "groups_32_of_64_64x64": ((1, 64, 64, 64), {"num_groups": 32}),
    },
    # An image model's 56x56 stage with 96 channels (MobileNetV2), 512 channels at 7x7 (ResNet's
    # last stage), and BatchNorm1d over a 768-wide MLP.
    "batch_norm": {
        "image_96x56x56": ((1, 96, 56, 56), {}),
        "image_512x7x7": ((4, 512, 7, 7), {}),
        "features_768": ((32, 768), {}),
    },
    "instance_norm": {
        "image_96x56x56": ((1, 96, 56, 56), {}),
        "image_512x8x8": ((2, 512, 8, 8), {}),
        "sequence_256x128": ((4, 256, 128), {}),
    },
}

RECIPES = ("large_offset", "distinct_slices")

# The configurations whose backward pass runs (test_production_shapes_vjp), per op: the prime
# width (long rows and a tail no vector divides), three normalized axes, the most channels and
# the longest slices, where a backward kernel changes algorithm. Not the whole table: each VJP of
# a JIT framework is one more compilation.
BACKWARD = {
    "layer_norm": ("rows_10007", "normalized_3d"),
    "rms_norm": ("rows_10007",),
    "group_norm": ("groups_64_of_512", "groups_32_of_64_64x64"),
    "batch_norm": ("image_512x7x7", "image_96x56x56"),
    "instance_norm": ("image_512x8x8", "image_96x56x56"),
}


def names(op: str) -> list:
    """The production configurations of `op`, by name (the test's parameter)."""
    return list(TABLE[op])


def backward_names(op: str) -> list:
    """The production configurations of `op` whose backward pass runs, by name."""
    return list(BACKWARD[op])


def layout(op: str, shape: tuple, channel_axis: int) -> tuple:
    """`shape` (channels first) in the layout of `channel_axis`."""
    if not OPS[op].has_channel_axis or channel_axis == 1:
        return tuple(shape)
    return (shape[0],) + tuple(shape[2:]) + (shape[1],)


def _rank_in_slice(ids: np.ndarray) -> tuple:
    """Each element's position within its slice (in memory order) and its slice's length."""
    flat = ids.ravel()
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(flat.size, dtype=np.int64)
    rank[order] = np.arange(flat.size) - starts[flat[order]]
    return rank.reshape(ids.shape), counts[flat].reshape(ids.shape)


def values(rng, recipe: str, ids: np.ndarray, dtype, statistics=None) -> tuple:
    """Inputs of one recipe (module docstring), rounded to `dtype`, and the per-slice
    statistics drawn for them ((centre, spread) per slice: pass them back to draw another
    input from the same distribution, as a second batch of a model is)."""
    slices = int(ids.max()) + 1
    if statistics is None:
        if recipe == "large_offset":
            half = ml_dtypes.finfo(dtype).bits == 16
            spread = 2.0 ** rng.integers(-2, 3, slices)
            ratio = 10.0 ** rng.uniform(1.5 if half else 3.5, 2 if half else 4, slices)
            centre = rng.choice([-1, 1], slices) * ratio * spread
        elif recipe == "distinct_slices":
            spread = 2.0 ** rng.uniform(-2, 2, slices)
            centre = np.round(rng.uniform(-4, 4, slices), 2)
        else:
            raise ValueError(f"recipe={recipe!r} unknown; choose from {RECIPES}")
        statistics = (centre, spread)
    centre, spread = statistics
    z = np.round(rng.standard_normal(ids.shape), 2)
    if recipe == "distinct_slices":
        rank, length = _rank_in_slice(ids)
        z = z + 2 * (2 * rank / np.maximum(length - 1, 1) - 1)  # a trend from -2 to 2 along the slice
    return (centre[ids] + spread[ids] * z).astype(dtype), statistics


def case(adapter, *, op: str, dtype: str, name: str, recipe: str, seed: int = 0,
         param_dtype: str | None = None) -> Case:
    """The production configuration `name` of `op` in the adapter's layout, filled by `recipe`.

    BatchNorm trains one step and then evaluates (evaluation alone for an adapter without
    training), from loaded running statistics of each channel's own (the module docstring);
    InstanceNorm tracks none. Weight and bias differ per channel (per element of
    normalized_shape). `param_dtype` (NUM-2.3) is the dtype of the parameters and running
    statistics, None for the input's; the inputs are the same whatever it is."""
    channel_axis = adapter.conventions.channel_axis
    canonical, attrs = TABLE[op][name]
    shape = layout(op, canonical, channel_axis)
    row, np_dtype = OPS[op], numpy_dtype(dtype)
    state_dtype = numpy_dtype(param_dtype or dtype)
    rng = np.random.default_rng([seed, len(name), sum(map(ord, name + op + dtype + recipe))])
    ids = slice_ids(op, shape, attrs, channel_axis)
    first, statistics = values(rng, recipe, ids, np_dtype)
    training = [True]
    if op == "batch_norm":
        training = [True, False] if adapter.capabilities.batch_norm_training else [False]
    inputs = [first] + [values(rng, recipe, ids, np_dtype, statistics)[0] for _ in training[1:]]
    params_shape = attrs.get("normalized_shape") or (shape[channel_axis],)
    params = {"weight": (rng.uniform(0.5, 2, params_shape) * rng.choice([-1, 1], params_shape)).astype(state_dtype),
              "bias": np.round(rng.uniform(-2, 2, params_shape), 2).astype(state_dtype) if row.has_bias else None}
    if op == "batch_norm":
        x = first.astype(np.float64)
        others = tuple(i for i in range(x.ndim) if i != channel_axis % x.ndim)
        variance = x.var(axis=others)
        params["running_mean"] = (x.mean(axis=others) + np.sqrt(variance) / 2).astype(state_dtype)
        params["running_var"] = (2 * variance).astype(state_dtype)
    elif row.stateful:
        params["running_mean"] = params["running_var"] = None
    return Case(op=op, dtype=dtype, inputs=inputs, training=training, eps=1e-5, attrs=attrs, params=params,
                momentum=0.1, channel_axis=channel_axis, family=f"production:{recipe}",
                param_dtype=None if param_dtype in (None, dtype) else param_dtype)


def vjp_case(adapter, *, op: str, dtype: str, name: str, recipe: str, seed: int = 0,
             param_dtype: str | None = None) -> Case:
    """The first call of `case` (a training one where the adapter trains) with a cotangent
    (normspec.backward): Gaussian for "large_offset"; for "distinct_slices" a large common offset
    over a small spread (mean(dy) then cancels, GRAD-3) where the parameters' gradients are float32
    or float64, Gaussian where they are half precision (the offset summed over a slice of
    thousands would overflow float16)."""
    first = case(adapter, op=op, dtype=dtype, name=name, recipe=recipe, seed=seed, param_dtype=param_dtype)
    half_parameters = numpy_dtype(param_dtype or dtype).itemsize == 2
    kind = "common_offset" if recipe == "distinct_slices" and not half_parameters else "gaussian"
    rng = np.random.default_rng([seed, 2, sum(map(ord, name + op + dtype + recipe))])
    # An adapter without BatchNorm training gets the evaluation call (GRAD-5), the case's only step.
    return dataclasses.replace(first, inputs=first.inputs[:1], training=first.training[:1],
                               cotangent=cotangent(rng, kind, first.shape, numpy_dtype(dtype)))
