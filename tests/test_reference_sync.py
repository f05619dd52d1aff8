"""The synchronized BatchNorm reference (spec DP) verified, not trusted: each replica's output and
the running statistics against mpmath at 60 digits over the global batch, on uneven, single-element
and empty shards and large offsets; and its rejections name their clause."""
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from normspec import reference, tolerance
from normspec.errors import ConfigurationError

mpmath.mp.dps = 60


@st.composite
def _shards(draw):
    """R shards of (m_r, C) or (m_r, C, L), sizes 0 to 4 with at least two values per channel in all."""
    replicas = draw(st.integers(2, 8))
    sizes = draw(st.lists(st.integers(0, 4), min_size=replicas, max_size=replicas).filter(lambda s: sum(s) >= 2))
    trailing = draw(st.sampled_from([(3,), (2, 2)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offset = draw(st.sampled_from([0.0, 1.0, 1e4, 1e8, -1e12]))
    spread = 10.0 ** draw(st.integers(-3, 3))
    return [offset + spread * rng.standard_normal((size, *trailing)) for size in sizes]


def _exact_channel(values, eps):
    """mean, biased variance and x_hat of one channel's values by mpmath."""
    values = [mpmath.mpf(float(v)) for v in values]
    mean = mpmath.fsum(values) / len(values)
    variance = mpmath.fsum([(v - mean) ** 2 for v in values]) / len(values)
    inverse_std = 1 / mpmath.sqrt(variance + mpmath.mpf(eps))
    return mean, variance, [(v - mean) * inverse_std for v in values]


@settings(max_examples=40, deadline=None)
@given(shards=_shards(), eps=st.sampled_from([1e-5, 1e-3]), momentum=st.sampled_from([0.1, 0.5]))
def test_sync_reference_matches_mpmath_on_the_global_batch(shards, eps, momentum):
    """DP-2, DP-3, DP-4: per-replica outputs are the global batch's x_hat rows of their shard, and the
    running statistics the BN-4.1 update of the global mean and the global-count unbiased variance."""
    result = reference.sync_batch_norm(shards, training=True, eps=eps, momentum=momentum, exact=True)
    assert [o.shape for o in result.outputs] == [s.shape for s in shards]
    channels = shards[0].shape[1]
    for c in range(channels):
        per_replica = [np.moveaxis(s, 1, 0)[c].ravel() for s in shards]
        values = np.concatenate(per_replica)
        m = len(values)
        mean, variance, x_hat = _exact_channel(values, eps)
        computed = np.concatenate([np.moveaxis(o, 1, 0)[c].ravel() for o in result.outputs])
        exact = np.array([float(v) for v in x_hat])
        bound = tolerance.reference_bound(exact, None, None)
        assert np.all(np.abs(computed - exact) <= bound), (c, computed, exact)
        exact_mean = float(momentum * mean)
        exact_var = float((1 - momentum) + momentum * variance * m / (m - 1))  # DP-2: the global count
        mean_bound = tolerance.reference_running_bound(exact_mean, momentum * float(mpmath.sqrt(variance)))
        assert abs(result.running_mean[c] - exact_mean) <= mean_bound, (c, result.running_mean[c], exact_mean)
        assert abs(result.running_var[c] - exact_var) <= tolerance.reference_running_bound(exact_var, 0.0), (
            c, result.running_var[c], exact_var)


def test_sync_reference_empty_shard_contributes_nothing():
    """DP-5: an empty shard gets an empty output, and the statistics are those without it."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 2)), rng.standard_normal((2, 2))
    with_empty = reference.sync_batch_norm([a, np.zeros((0, 2)), b], training=True, eps=1e-5, exact=True)
    without = reference.sync_batch_norm([a, b], training=True, eps=1e-5, exact=True)
    assert with_empty.outputs[1].shape == (0, 2)
    np.testing.assert_array_equal(np.concatenate(with_empty.outputs), np.concatenate(without.outputs))
    np.testing.assert_array_equal(with_empty.running_var, without.running_var)


def test_sync_reference_is_not_the_mean_of_replica_means():
    """DP-2: with uneven shards the global mean differs from the unweighted mean of shard means."""
    shards = [np.array([[0.0], [0.0], [0.0]]), np.array([[4.0]])]
    result = reference.sync_batch_norm(shards, training=True, eps=0.0, momentum=1.0, exact=True)
    assert result.running_mean[0] == 1.0  # (0 + 0 + 0 + 4) / 4, not (0 + 4) / 2
    assert result.running_var[0] == 4.0  # squared deviations 1 + 1 + 1 + 9 = 12 over m - 1 = 3


@pytest.mark.parametrize("shards, clause", [
    ([], "DP-1"),
    ([np.zeros((0, 2)), np.zeros((0, 2))], "DP-1"),
    ([np.ones((2, 2)), np.ones((2, 3))], "DP-1"),
    ([np.ones((1, 2)), np.zeros((0, 2))], "BN-5.2"),
])
def test_sync_reference_rejections_name_the_clause(shards, clause):
    """DP-1 (no replica, an empty global batch, mismatched shards) and BN-5.2 on the global count."""
    with pytest.raises(ConfigurationError) as error:
        reference.sync_batch_norm(shards, training=True, eps=1e-5)
    assert error.value.clause == clause


def test_sync_reference_vjp_splits_the_global_vjp():
    """DP-7: the per-replica input gradients are the global batch's, row for row."""
    rng = np.random.default_rng(1)
    shards = [rng.standard_normal((n, 3)) for n in (2, 0, 1, 3)]
    cotangents = [rng.standard_normal(s.shape) for s in shards]
    gradient = reference.sync_batch_norm_vjp(shards, cotangents, np.ones(3), np.zeros(3), training=True, eps=1e-5,
                                             exact=True)
    assert [g.shape for g in gradient["x"]] == [s.shape for s in shards]
    # GRAD-3's input gradient of each channel sums to 0 over the global batch, not per replica
    np.testing.assert_allclose(np.concatenate(gradient["x"]).sum(axis=0), 0.0, atol=1e-12)
