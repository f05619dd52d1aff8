"""A rejected call leaves the layer as it was (spec ERR-1, BN-5.2): the running statistics bit
for bit, and the step count, which the cumulative average (BN-4.2) makes observable; and the
single-value rule of InstanceNorm with tracked running statistics (IN-3)."""
import dataclasses

import numpy as np
import pytest

from normspec import oracle
from normspec.compare import Context, assert_within
from normspec.conventions import effective_alpha, make_layer
from normspec.driver import check_running_update, read_running_stats, run_case
from normspec.error_inputs import BAD_CALLS, bad_call_input, one_value_per_slice_case, valid_case


def _loaded_case(adapter, op, dtype):
    """valid_case with running statistics other than the initial ones (so a reset shows), and
    the cumulative average (momentum None) where the adapter has it, so that the step count shows."""
    case = valid_case(op, dtype, adapter.conventions.channel_axis, running_stats=True)
    np_dtype = case.inputs[0].dtype
    params = dict(case.params, running_mean=np.linspace(-1, 1, 6).astype(np_dtype),
                  running_var=np.linspace(0.5, 3, 6).astype(np_dtype))
    cumulative = op == "batch_norm" and adapter.capabilities.cumulative_average
    return dataclasses.replace(case, params=params, momentum=None if cumulative else 0.25)


def _rejected(layer, x) -> bool:
    try:
        layer(x, training=True)
    except Exception:
        return True
    return False


def _check_unchanged(layer, case, before, context, what):
    """ERR-1: the running statistics after the rejected call equal those before it, bit for bit."""
    after = read_running_stats(layer, case, context)
    for name, old, new in zip(("running mean", "running variance"), before, after):
        assert_within(new, old, 0, clause="ERR-1", context=context, what=f"{name} after {what}")
    return after


@pytest.mark.clauses("ERR-1", "BN-4.2", "IN-3")
@pytest.mark.ops("batch_norm", "instance_norm")
@pytest.mark.dtypes("float32")
@pytest.mark.parametrize("kind", list(BAD_CALLS))
def test_rejected_call_leaves_state_unchanged(adapter, op, dtype, device, kind):
    """A layer that has trained one step is called with an input it must reject (an integer
    input, the wrong channel count, rank 6, an empty batch). If it raises, its running statistics
    are unchanged; with the cumulative average (BN-4.2) the next valid step still averages with
    weight 1/2, which a step count incremented by the rejected call would make 1/3."""
    if op == "instance_norm" and not adapter.capabilities.instance_norm_running_stats:
        pytest.skip("not run: the adapter's InstanceNorm keeps no running statistics (IN-3)")
    if op == "batch_norm" and not adapter.capabilities.batch_norm_training:
        pytest.skip("not run: the adapter's BatchNorm does not train")
    case = _loaded_case(adapter, op, dtype)
    axis, x = case.channel_axis, case.inputs[0]
    context = Context(adapter.id, op, dtype, device, x.shape, case=case)
    layer = make_layer(adapter, case, device)
    layer(x, training=True)
    before = read_running_stats(layer, case, context)
    if not _rejected(layer, bad_call_input(kind, x, axis)):
        return  # the missing error is test_rejections.py's finding; here there is no error to survive
    state = _check_unchanged(layer, case, before, context, f"the rejected call ({kind}, {BAD_CALLS[kind]})")
    _check_next_step(adapter, layer, case, state, context, x)


def _check_next_step(adapter, layer, case, state, context, x):
    """ERR-1's step count: a valid training step after the rejected call updates the running statistics
    as the second step of the layer (BN-4.2: weight 1/2 under the cumulative average, which a count
    the rejected call incremented would make 1/3)."""
    second = (x.astype(np.float64)[::-1] * 0.5 + 0.25).astype(x.dtype)  # a valid step after the error
    layer(second, training=True)
    after = read_running_stats(layer, case, context)
    reference_case = dataclasses.replace(case, momentum=effective_alpha(adapter, case.momentum))
    result, steps = oracle.reference_step(reference_case, second, *state, True, 1,
                                          adapter.conventions.running_var_estimator)
    check_running_update(reference_case, second, True, state, after, result, steps, 1, context,
                         "the valid step after the rejected call")


@pytest.mark.clauses("BN-5.2", "ERR-1", "BN-4.2")
@pytest.mark.ops("batch_norm")
@pytest.mark.requires("batch_norm_training")
def test_single_value_channel_leaves_state_unchanged(adapter, op, dtype, device):
    """Under the unbiased profile a training call with one value per channel raises (BN-5.2,
    test_degenerate.py) and leaves the state unchanged: the loaded running statistics, and the
    step count, which a valid step after it shows under the cumulative average (ERR-1, BN-4.2)."""
    if adapter.conventions.running_var_estimator != "unbiased":
        pytest.skip("not run: BN-5.2 applies under the unbiased profile; the adapter declares biased")
    case = one_value_per_slice_case(op, dtype, adapter.conventions.channel_axis)
    if adapter.capabilities.cumulative_average:
        case = dataclasses.replace(case, momentum=None)
    context = Context(adapter.id, op, dtype, device, case.shape, case=case)
    layer = make_layer(adapter, case, device)
    valid = np.array([[0.5, -1.25, 3.0], [2.0, 0.25, -0.75]], case.inputs[0].dtype)  # two samples: defined
    layer(valid, training=True)
    before = read_running_stats(layer, case, context)
    if _rejected(layer, case.inputs[0]):
        after = read_running_stats(layer, case, context)
        for name, old, new in zip(("running mean", "running variance"), before, after):
            assert_within(new, old, 0, clause="BN-5.2", context=context, what=f"{name} after the rejected call")
        _check_next_step(adapter, layer, case, after, context, valid)


@pytest.mark.clauses("IN-3", "ERR-1")
@pytest.mark.ops("instance_norm")
@pytest.mark.requires("instance_norm_running_stats")
def test_single_value_instance_slices(adapter, op, dtype, device):
    """InstanceNorm with tracked running statistics, trained on slices of one position (n = 1):
    under the unbiased profile an error, as BN-5.2 requires, with the running statistics
    unchanged (ERR-1); under the biased profile the output is beta and the update defined (v = 0),
    as BN-5.1 has it."""
    case = one_value_per_slice_case(op, dtype, adapter.conventions.channel_axis)
    if adapter.conventions.running_var_estimator == "biased":
        run_case(adapter, case, device, clause="IN-3")
        return
    context = Context(adapter.id, op, dtype, device, case.shape, case=case)
    layer = make_layer(adapter, case, device)
    before = read_running_stats(layer, case, context)
    if not _rejected(layer, case.inputs[0]):
        context.fail("IN-3", "training step", "returned a result for instance slices of one value under the unbiased "
                     "profile with tracked running statistics; the spec requires an error (the unbiased variance "
                     "divides by n - 1 = 0)")
    _check_unchanged(layer, case, before, context, "the rejected call")
