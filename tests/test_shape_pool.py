"""The shape pools the strategies draw from cover what the suite promises: reduction
lengths of 1, small non-powers of two and longer than 64, every rank, batch 1, and
GroupNorm with one group and with one channel per group."""
import numpy as np
import pytest

from normspec import shape_pool
from normspec.registry import OPS

_POOLS = [(op, axis, minimum, size) for op in OPS for axis in (1, -1) for minimum in (1, 2)
          for size in sorted(set(shape_pool.SIZES.values()))]


@pytest.mark.parametrize("op, channel_axis, min_reduction, size", _POOLS)
def test_pool_covers_the_promised_shapes(op, channel_axis, min_reduction, size):
    pool = shape_pool.pool(op, channel_axis=channel_axis, min_reduction=min_reduction, pool_size=size)
    lengths = {shape_pool.reduction_length(op, s, a, channel_axis) for s, a in pool}
    assert min(lengths) == min_reduction, f"smallest reduction length {min(lengths)}"
    assert any(n > 2 and n & (n - 1) and n <= 9 for n in lengths), f"no small non-power of two in {sorted(lengths)}"
    assert any(n > 64 for n in lengths), f"no reduction longer than 64 in {sorted(lengths)}"
    ranks = {len(s) for s, _ in pool}
    if OPS[op].has_channel_axis:
        assert ranks == set(range(OPS[op].ranks[0], OPS[op].ranks[1] + 1)), f"ranks {sorted(ranks)}"
    else:
        assert {len(a["normalized_shape"]) for _, a in pool} == {1, 2}
        assert {len(s) - len(a["normalized_shape"]) for s, a in pool} == {0, 1, 2}
    assert any(s[0] == 1 for s, _ in pool) and any(s[0] > 1 for s, _ in pool)
    if op == "group_norm":
        channels = [s[channel_axis % len(s)] for s, _ in pool]
        groups = [a["num_groups"] for _, a in pool]
        assert 1 in groups and any(g == c > 1 for g, c in zip(groups, channels))
        assert any(1 < g < c for g, c in zip(groups, channels))
    assert len(pool) >= size
    assert all(int(np.prod(s)) <= 16384 for s, _ in pool), "shapes stay small enough to run fast"


def test_pool_is_sorted_deterministic_and_sized():
    first = shape_pool.pool("batch_norm", channel_axis=-1, min_reduction=2, pool_size=64)
    shape_pool.pool.cache_clear()
    again = shape_pool.pool("batch_norm", channel_axis=-1, min_reduction=2, pool_size=64)
    assert first == again
    sizes = [int(np.prod(s)) for s, _ in first]
    assert sizes == sorted(sizes), "the pool must be sorted by element count (shrinking goes to index 0)"
    assert len(set((s, tuple(a.items())) for s, a in first)) == len(first) == 64


def test_set_size_rejects_a_pool_too_small_for_its_classes():
    with pytest.raises(ValueError, match="at least 8"):
        shape_pool.set_size(3)
