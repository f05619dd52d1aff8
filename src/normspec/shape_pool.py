"""The shapes the strategies draw from: a fixed pool per op (shape bucketing).

Drawing a fresh shape for every example costs twice: Hypothesis spends more time
building a shape from nested list and one_of draws than most frameworks spend on the
call, and a JIT-compiled framework (JAX) compiles once per new input shape, about
1000 times its call time. So each op gets a pool of shapes, drawn once from the same
distribution the suite has always used (reduction lengths of 1, small non-powers of
two and longer than 64; every rank; batch 1; one group and one channel per group),
then chosen so that every coverage class below is present. An example draws one
index into the pool; the pool is sorted by element count, so a failure shrinks to
the smallest shape that still fails.

The pool is the same for every adapter and every run of a profile (its size comes
from the profile: `set_size`), so the derandomized ci profile stays reproducible
and devices and frameworks see the same shapes. A larger size searches more shapes
at the price of more compilations; `thorough` uses the largest.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from normspec.registry import OPS, slice_ids
from normspec.run import CURRENT

SIZES = {"ci": 32, "dev": 64, "thorough": 256}
_MAX_ELEMENTS = 4096  # spatial extent at most _MAX_ELEMENTS // 40 (a shape has at most 16384 elements)
_CANDIDATES = 2000


def set_size(size: int) -> None:
    """Shapes per pool from now on, in the run's settings (the plugin sets it from the profile)."""
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"shape pool size={size!r}: it must be an integer of at least 8, so that every "
                         f"coverage class fits; use normspec.shape_pool.SIZES for the profiles' sizes")
    CURRENT.settings.shape_pool_size = size


def _length(rng, max_value: int = 80) -> int:
    """A reduction-relevant size: 1, a small non-power of two, or longer than 64 (a third each)."""
    kind = rng.integers(3)
    return 1 if kind == 0 else int(rng.integers(2, 10)) if kind == 1 else int(rng.integers(65, max_value + 1))


def _cap(dims: list, limit: int) -> list:
    """Halve the largest dimension until the product is at most `limit`."""
    dims = list(dims)
    while int(np.prod(dims)) > limit:
        largest = int(np.argmax(dims))
        dims[largest] = (dims[largest] + 1) // 2
    return dims


def sample(rng, op: str, channel_axis: int, min_reduction: int) -> tuple:
    """One (shape, attrs) for `op`; min_reduction=2 keeps every slice at two or more elements."""
    row = OPS[op]
    if not row.has_channel_axis:
        normalized = _cap([_length(rng) for _ in range(rng.integers(1, 3))], 1024)
        if int(np.prod(normalized)) < min_reduction:
            normalized[-1] = min_reduction
        leading = [int(d) for d in rng.integers(1, 5, rng.integers(0, 3))]
        return tuple(leading + normalized), {"normalized_shape": tuple(normalized)}
    rank = int(rng.integers(row.ranks[0], row.ranks[1] + 1))
    batch = int(rng.integers(1, 6))
    spatial = _cap([int(rng.integers(1, 10)) if rng.random() < 0.5 else int(rng.integers(65, 71))
                    for _ in range(rank - 2)], _MAX_ELEMENTS // 40)
    if op == "group_norm":
        groups, per_group = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        channels, attrs = groups * per_group, {"num_groups": groups}
        reduction = per_group * int(np.prod(spatial))
    else:
        channels, attrs = int(rng.integers(1, 6)), {}
        reduction = int(np.prod(spatial)) * (batch if op == "batch_norm" else 1)
    if reduction < min_reduction:
        if op == "batch_norm":
            batch = max(batch, min_reduction)
        elif spatial:
            spatial[0] = max(spatial[0], min_reduction)
        else:  # rank-2 GroupNorm: widen the groups
            channels = attrs["num_groups"] * min_reduction
    dims = [batch] + spatial
    dims.insert(1 if channel_axis == 1 else len(dims), channels)
    return tuple(dims), attrs


def reduction_length(op: str, shape: tuple, attrs: dict, channel_axis: int) -> int:
    """Elements in one slice (the N of the error model), from the suite's one slice geometry."""
    return int(np.bincount(slice_ids(op, shape, attrs, channel_axis).ravel()).max())


def coverage(op: str, shape: tuple, attrs: dict, channel_axis: int) -> frozenset:
    """The coverage classes a shape belongs to; every pool holds each class its op can reach."""
    n = reduction_length(op, shape, attrs, channel_axis)
    length = "one" if n == 1 else "long" if n > 64 else "power_of_two" if n & (n - 1) == 0 else "other"
    classes = {f"reduction:{length}", f"rank:{len(shape)}", f"batch:{'one' if shape[0] == 1 else 'many'}"}
    if not OPS[op].has_channel_axis:
        classes.add(f"normalized_axes:{len(attrs['normalized_shape'])}")
        classes.add(f"leading_axes:{len(shape) - len(attrs['normalized_shape'])}")
    else:
        channels = shape[channel_axis % len(shape)]
        classes.add(f"channels:{'one' if channels == 1 else 'many'}")
        if any(d > 64 for i, d in enumerate(shape) if i not in (0, channel_axis % len(shape))):
            classes.add("spatial:long")
    if op == "group_norm":
        groups = attrs["num_groups"]
        classes.add("groups:one" if groups == 1 else "groups:one_channel_each" if groups == channels
                    else "groups:several_channels_each")
    return frozenset(classes)


@lru_cache(maxsize=None)
def pool(op: str, *, channel_axis: int = 1, min_reduction: int = 1, pool_size: int | None = None) -> tuple:
    """The pool for `op`: (shape, attrs) pairs sorted by element count, then shape.

    Candidates come from `sample` with a generator seeded by the arguments; a greedy
    cover first takes, class by class, the smallest candidate of each coverage class,
    then the rest are filled in candidate order.
    """
    pool_size = pool_size or CURRENT.settings.shape_pool_size
    key = f"{op}|{channel_axis}|{min_reduction}".encode()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
    candidates, seen = [], set()
    for _ in range(_CANDIDATES):
        shape, attrs = sample(rng, op, channel_axis, min_reduction)
        signature = (shape, tuple(sorted(attrs.items())))
        if signature not in seen:
            seen.add(signature)
            candidates.append((shape, attrs))
    classes = [coverage(op, shape, attrs, channel_axis) for shape, attrs in candidates]
    chosen = []
    for wanted in sorted(set().union(*classes)):
        if not any(wanted in classes[i] for i in chosen):
            holders = [i for i, c in enumerate(classes) if wanted in c]
            chosen.append(min(holders, key=lambda i: (int(np.prod(candidates[i][0])), i)))
    for i in range(len(candidates)):
        if len(chosen) >= pool_size:
            break
        if i not in chosen:
            chosen.append(i)
    picked = [candidates[i] for i in chosen]
    return tuple(sorted(picked, key=lambda item: (int(np.prod(item[0])), item[0], sorted(item[1].items()))))
