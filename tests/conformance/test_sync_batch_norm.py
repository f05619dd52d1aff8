"""Synchronized BatchNorm (spec/ops/sync_batch_norm.md, DP) run by the engine's own collective on R
replicas: every replica's output and running statistics against the reference on the concatenated
global batch, on drawn replica counts, equal, uneven, single-sample and empty shards (as the adapter
declares, Capabilities.shard_sizes), every value family, large offsets included, and every input dtype,
float16 and bfloat16 included (NUM-2.1 on the global batch)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from normspec.data_parallel import (SyncContext, check_replicas_agree, read_replica_stats, restored_running_stats,
                                    run_sync_case, run_sync_vjp, sync_cases)
from normspec.compare import Context
from normspec.dtypes import DTYPES, numpy_dtype
from normspec.strategies import COTANGENTS, cotangent
from normspec.harness import adapter_call
from normspec.conventions import adapter_momentum

# Every input dtype: half-precision shards are how mixed-precision data-parallel training feeds BatchNorm.
SYNC_DTYPES = DTYPES


def _sync_test(*clauses):
    """A Hypothesis test of synchronized BatchNorm citing `clauses`."""
    def mark(test):
        test = given(data=st.data())(test)
        for marker in (pytest.mark.ops("sync_batch_norm"), pytest.mark.dtypes(*SYNC_DTYPES),
                       pytest.mark.clauses(*clauses)):
            test = marker(test)
        return test
    return mark


def _cotangents(case, data) -> list:
    """One drawn cotangent per replica, each of its shard's shape and dtype, from the case's seed."""
    rng = np.random.default_rng(case.seed)
    kind = data.draw(st.sampled_from(COTANGENTS), label="cotangent")
    return [cotangent(rng, kind, shard.shape, numpy_dtype(case.dtype)) for shard in case.steps[0]]


@_sync_test("DP-1", "DP-2", "DP-3", "DP-4", "DP-5", "DP-6", "BN-4.3")
def test_sync_matches_batch_norm_of_the_global_batch(adapter, op, dtype, device, data):
    """Two training steps and an evaluation step: each replica's output is its rows of BatchNorm of the
    global batch (DP-3), the running statistics are identical on every replica and the update from the
    global statistics with the global count (DP-2, DP-4), within DP-6's bounds."""
    case = data.draw(sync_cases(adapter, op=op, dtype=dtype), label="case")
    run_sync_case(adapter, case, device)


@_sync_test("DP-5", "DP-2", "DP-4")
def test_sync_shard_sizes_beyond_equal(adapter, op, dtype, device, data):
    """Uneven shards, shards of one sample and empty shards (DP-5), as the adapter declares it can
    express them: the statistics are those of the global batch, never the mean of per-replica means."""
    if "uneven" not in adapter.capabilities.shard_sizes:
        pytest.skip(f"not run: {adapter.id} declares it cannot express uneven shards (Capabilities.shard_sizes)")
    case = data.draw(sync_cases(adapter, op=op, dtype=dtype).filter(lambda c: len(set(c.sizes)) > 1), label="case")
    run_sync_case(adapter, case, device)


@_sync_test("DP-1", "DP-3", "DP-4", "DP-6")
def test_sync_restored_running_statistics(adapter, op, dtype, device, data):
    """A layer built with given running statistics (a restored checkpoint, the same on every replica:
    DP-1) holds them, updates them from the global statistics in training (DP-4) and normalizes with
    them in evaluation (DP-3)."""
    case = data.draw(sync_cases(adapter, op=op, dtype=dtype), label="case")
    run_sync_case(adapter, case, device, running=restored_running_stats(case))


@pytest.mark.clauses("DP-1", "DP-5", "ERR-2")
@pytest.mark.ops("sync_batch_norm")
@pytest.mark.dtypes("float32")
def test_sync_empty_global_batch_is_rejected(adapter, op, dtype, device):
    """Every shard empty: the global batch has no values (m = 0), which DP-1 and DP-5 require to be
    rejected with an error (ERR-2: an exception), not answered with outputs and running statistics
    of 0/0. Run where the adapter can express empty shards (Capabilities.shard_sizes)."""
    if "empty" not in adapter.capabilities.shard_sizes:
        pytest.skip(f"not run: {adapter.id} declares it cannot express empty shards (Capabilities.shard_sizes)")
    channels, replicas = 2, 2
    shape = [0, channels, 3]
    channel_axis = adapter.conventions.channel_axis % len(shape)
    shards = [np.moveaxis(np.zeros(shape, numpy_dtype(dtype)), 1, channel_axis) for _ in range(replicas)]
    try:
        layer = adapter.sync_batch_norm_layer(
            replicas=replicas, num_features=channels, dtype=dtype, weight=None, bias=None, running_mean=None,
            running_var=None, momentum=adapter_momentum(adapter, 0.1), eps=1e-5, device=device)
        layer(shards, training=True)
        stats = layer.running_stats()
    except Exception:  # the error DP-1 requires (ERR-2: an exception is distinguishable)
        return
    Context(adapter.id, op, dtype, device, tuple(shards[0].shape)).fail(
        "DP-1", "call (training)", f"accepted {replicas} empty shards (a global batch of m = 0 values) and "
                                   f"returned outputs, with replica 0's running statistics "
                                   f"{[np.asarray(v).tolist() for v in stats[0]]}; the spec requires an error (DP-1)")


@_sync_test("DP-4", "DP-3")
def test_sync_evaluation_leaves_every_replica_unchanged(adapter, op, dtype, device, data):
    """An evaluation call on a fresh layer returns an output of each shard's shape and changes no
    replica's running statistics (DP-3, DP-4)."""
    case = data.draw(sync_cases(adapter, op=op, dtype=dtype), label="case")
    context = SyncContext(adapter.id, case, device)
    with adapter_call(context, "layer construction", "DP-1"):
        layer = adapter.sync_batch_norm_layer(
            replicas=case.replicas, num_features=case.channels, dtype=case.dtype, weight=None, bias=None,
            running_mean=None, running_var=None, momentum=adapter_momentum(adapter, case.alpha), eps=case.eps,
            device=device)
    shards = list(case.steps[0])
    before = read_replica_stats(layer, case, context)
    with adapter_call(context, "call (evaluation)", "DP-3"):
        outputs = layer(shards, training=False)
    stats = read_replica_stats(layer, case, context)
    check_replicas_agree(stats, context, "an evaluation call")
    for r, (pair, pair_before) in enumerate(zip(stats, before)):
        for name, value, value_before in zip(("running mean", "running variance"), pair, pair_before):
            if not np.array_equal(value, value_before, equal_nan=True):
                context.fail("DP-4", f"replica {r} {name} after an evaluation call",
                             f"is {value.tolist()}, expected {value_before.tolist()} unchanged")
    for r, (output, shard) in enumerate(zip(outputs, shards)):
        if np.asarray(output).shape != shard.shape:
            context.fail("DP-3", f"replica {r} evaluation output", f"has shape {np.asarray(output).shape}, "
                                                                   f"expected its shard's {shard.shape}")


@pytest.mark.requires("data_parallel_backward")
@_sync_test("DP-7", "GRAD-1")
def test_sync_vjp_is_the_global_vjp_per_shard(adapter, op, dtype, device, data):
    """DP-7: each replica's input gradient is its rows of the global batch's BatchNorm VJP (with the
    concatenated cotangents), and the replicas' parameter gradients sum to the global ones."""
    case = data.draw(sync_cases(adapter, op=op, dtype=dtype), label="case")
    run_sync_vjp(adapter, case, _cotangents(case, data), device)


@pytest.mark.clauses("DP-3", "DP-4", "NUM-2.3", "NUM-2.2")
@pytest.mark.ops("sync_batch_norm")
@pytest.mark.dtypes("float16", "bfloat16")
@given(data=st.data())
def test_sync_mixed_precision(adapter, op, dtype, device, param_dtype, data):
    """Mixed precision across replicas (NUM-2.3), as mixed-precision data-parallel training runs it:
    half shards with parameters and running statistics in `param_dtype` (float32); each replica's
    output in the input dtype and its rows of the global batch's BatchNorm (DP-3), the running
    statistics in the parameters' dtype and identical on every replica (DP-4). Only adapters that
    declare the pairs (Capabilities.mixed_precision) get these items."""
    case = data.draw(sync_cases(adapter, op=op, dtype=dtype, param_dtype=param_dtype), label="case")
    run_sync_case(adapter, case, device)


@pytest.mark.requires("data_parallel_backward")
@pytest.mark.clauses("DP-7", "GRAD-8.2")
@pytest.mark.ops("sync_batch_norm")
@pytest.mark.dtypes("float16", "bfloat16")
@given(data=st.data())
def test_sync_mixed_precision_vjp(adapter, op, dtype, device, param_dtype, data):
    """DP-7 under mixed precision: each replica's input gradient in the input dtype, its weight and
    bias gradients in the parameters' dtype (GRAD-8.2), within DP-7's bounds at each one's rounding."""
    case = data.draw(sync_cases(adapter, op=op, dtype=dtype, param_dtype=param_dtype), label="case")
    run_sync_vjp(adapter, case, _cotangents(case, data), device)
