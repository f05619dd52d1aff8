"""More invalid configurations that must be rejected with an error (spec ERR-1, ERR-2): unsupported
dtypes (ERR-1.1), ranks outside the op's range (ERR-1.7), empty slices (ERR-1.9), and more than one
invalid value of epsilon, groups, normalized_shape and momentum (ERR-1.3 to ERR-1.6).

Each builds a small valid case and breaks one thing (normspec.error_inputs). An error is an
exception from the layer's construction or its call (ERR-2: distinguishable from a result);
its wording is not checked.
"""
import ml_dtypes
import numpy as np
import pytest

from normspec.compare import Context
from normspec.conventions import make_layer
from normspec.error_inputs import (BAD_RANKS, bad_rank_case, empty_slice_case, more_value_case, more_value_kinds,
                                   valid_case)


def _accepted(adapter, case, device, x=None) -> bool:
    """Whether the adapter returned an output for the first step of `case` (with input `x`)."""
    try:
        layer = make_layer(adapter, case, device)
        layer(case.inputs[0] if x is None else x, training=case.training[0])
    except Exception:  # the error ERR-1 requires (ERR-2: an exception is distinguishable)
        return False
    return True


def _fail(adapter, op, dtype, device, shape, clause, what):
    Context(adapter.id, op, dtype, device, shape).fail(
        clause, "call", f"accepted {what} and returned an output; the spec requires an error ({clause})")


_BAD_DTYPES = {"int32": np.int32, "bool": np.bool_, "complex64": np.complex64,
               "float8_e4m3fn": ml_dtypes.float8_e4m3fn}


@pytest.mark.clauses("ERR-1.1", "GEN-2", "ERR-2")
@pytest.mark.dtypes("float32")
@pytest.mark.parametrize("kind", list(_BAD_DTYPES))
def test_unsupported_input_dtype_is_rejected(adapter, op, dtype, device, kind):
    """An input of a dtype outside GEN-2 (integer, boolean, complex, 8-bit floating point), with
    float32 parameters: rejected, not converted implicitly (GEN-2)."""
    case = valid_case(op, dtype, adapter.conventions.channel_axis,
                      running_stats=adapter.capabilities.instance_norm_running_stats)
    x = np.round(case.inputs[0].astype(np.float64) * 4).astype(_BAD_DTYPES[kind])
    if _accepted(adapter, case, device, x):
        _fail(adapter, op, dtype, device, x.shape, "ERR-1.1", f"an input of dtype {kind}")


@pytest.mark.clauses("ERR-1.3", "ERR-1.4", "ERR-1.5", "ERR-1.6", "LN-1", "RMS-1", "GN-1", "ERR-2")
@pytest.mark.dtypes("float32")
@pytest.mark.per_op("kind", more_value_kinds)
def test_more_invalid_values_are_rejected(adapter, op, dtype, device, kind, request):
    """Epsilon NaN, +-Inf, a tiny negative or a complex number (ERR-1.3); zero, negative,
    fractional groups or more groups than channels (ERR-1.4); an empty normalized_shape, one longer
    than the rank or naming leading dimensions (ERR-1.5); a new-batch weight below 0, NaN or Inf
    (ERR-1.6). test_errors.py checks one value of each."""
    case, clause = more_value_case(kind, op, dtype, adapter.conventions.channel_axis,
                                   running_stats=adapter.capabilities.instance_norm_running_stats)
    request.node.user_properties.append(("normspec_clauses", [clause]))
    if _accepted(adapter, case, device):
        _fail(adapter, op, dtype, device, case.shape, clause,
              f"{kind} (eps={case.eps}, momentum alpha={case.momentum}, {case.attrs})")


@pytest.mark.clauses("ERR-1.7", "BN-1", "GN-1", "IN-1", "ERR-2")
@pytest.mark.ops(*BAD_RANKS)
@pytest.mark.dtypes("float32")
@pytest.mark.per_op("rank", lambda op: list(BAD_RANKS[op]))
def test_rank_outside_range_is_rejected(adapter, op, dtype, device, rank):
    """An input of rank 1 or 6 (BatchNorm, GroupNorm) or 2 or 6 (InstanceNorm): outside the op's
    range, so rejected. (The channel axis is the adapter's own, 1 or -1, so a channel axis on the
    batch axis is not something the interface can pass: a rank-1 input with channels last is one.)"""
    channel_axis, tracked = adapter.conventions.channel_axis, adapter.capabilities.instance_norm_running_stats
    # The layer is built for the valid case's 6 channels and called with the input of the wrong rank.
    layer_case = valid_case(op, dtype, channel_axis, running_stats=tracked)
    x = bad_rank_case(op, dtype, channel_axis, rank, running_stats=tracked).inputs[0]
    if _accepted(adapter, layer_case, device, x):
        _fail(adapter, op, dtype, device, x.shape, "ERR-1.7", f"an input of rank {rank}")


@pytest.mark.clauses("ERR-1.9", "ERR-2")
@pytest.mark.dtypes("float32")
@pytest.mark.parametrize("kind", ["zero_batch", "empty_slice"])
def test_empty_slices_are_rejected(adapter, op, dtype, device, kind):
    """A zero-size batch (or leading dimension): no slices; a zero-size reduced dimension (a
    spatial axis; the normalized axis, with normalized_shape (0,)): empty slices. Both rejected,
    not answered with an empty output."""
    case = empty_slice_case(op, dtype, adapter.conventions.channel_axis, kind,
                            running_stats=adapter.capabilities.instance_norm_running_stats)
    if _accepted(adapter, case, device):
        _fail(adapter, op, dtype, device, case.shape, "ERR-1.9", f"an input of shape {case.shape} ({kind})")
