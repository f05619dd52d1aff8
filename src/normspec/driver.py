"""Running a case on an adapter and checking every output and running statistic against
the reference: the driver the differential tests, the laws and the reproductions use."""
from __future__ import annotations

import dataclasses

import numpy as np

from normspec import oracle, tolerance
from normspec.adapters import Adapter
from normspec.cases import Case
from normspec.compare import ClauseRouting, Context, assert_within, check_array, routing
from normspec.conventions import arrays_kept_unchanged, effective_alpha, make_layer
from normspec.dtypes import numpy_dtype
from normspec.harness import adapter_call
from normspec.registry import OPS


def run_case(adapter: Adapter, case: Case, device: str, *, clause: str | ClauseRouting = "NUM-1.1",
             context: Context | None = None) -> list:
    """Run every step of `case` on `adapter` and check it against the reference: outputs
    within the bound of NUM-1.1 (cited as `clause`, a clause ID or a ClauseRouting that
    also names what a NaN or Inf where a finite value is due cites, and a wrong value where
    NaN or Inf is due), running statistics within NUM-1.5.
    Returns the observed outputs; raises NonConformance."""
    route = routing(clause)
    context = context or Context(adapter.id, case.op, case.dtype, device, case.shape, case=case)
    dtype = numpy_dtype(case.dtype)
    estimator = adapter.conventions.running_var_estimator
    reference_case = dataclasses.replace(case, momentum=effective_alpha(adapter, case.momentum))
    row = OPS[case.op]
    with adapter_call(context, "layer construction", row.defining_clause, unchanged=arrays_kept_unchanged(case)):
        layer = make_layer(adapter, case, device)
        state = read_running_stats(layer, case, context)
        if state[0] is not None and case.params.get("running_mean") is None:
            check_initial_state(state, context)
    outputs, trained = [], 0
    for step, (x, training) in enumerate(zip(case.inputs, case.training)):
        label = f"step {step + 1} ({'training' if training else 'evaluation'})" if row.stateful else ""
        with adapter_call(context, f"call {label}".strip(), row.defining_clause,
                          unchanged=arrays_kept_unchanged(case, x=x)):
            observed = layer(x, training=training)
        observed = check_array(observed, shape=x.shape, dtype=dtype, context=context, what=f"output {label}".strip())
        result, steps = oracle.reference_step(reference_case, x, *state, training, trained, estimator)
        bound = oracle.output_bound(case, steps, result.output)
        assert_within(observed, result.output, bound, clause=route, context=context, what=f"output {label}".strip(),
                      dtype=dtype, nan_allowed=oracle.nan_allowed(case, x),
                      nonfinite_allowed=oracle.nonfinite_allowed(case, steps))
        outputs.append(observed)
        if row.stateful:
            with adapter_call(context, "running_stats()", row.defining_clause):
                new_state = read_running_stats(layer, case, context)
            check_running_update(reference_case, x, training, state, new_state, result, steps, trained, context,
                                 label, route.propagation)
            state = new_state
        trained += bool(training)
    return outputs


def read_running_stats(layer, case: Case, context: Context):
    """The layer's running statistics as float64 arrays, shape and dtype checked; (None, None)
    for an op without state or an InstanceNorm that tracks none."""
    if not OPS[case.op].stateful:
        return None, None
    mean, var = layer.running_stats()
    tracking = case.op == "batch_norm" or case.params.get("running_mean") is not None
    if not tracking:
        return None, None
    channels = case.shape[case.channel_axis]
    values = []
    for name, value in (("running mean", mean), ("running variance", var)):
        value = check_array(value, shape=(channels,), dtype=numpy_dtype(case.parameter_dtype), context=context,
                            what=name, dtype_source="the parameters' dtype (NUM-2.3)" if case.mixed else "the input dtype")
        values.append(value.astype(np.float64))
    return tuple(values)


def check_initial_state(state, context: Context) -> None:
    """BN-4.3: a fresh layer starts at mean 0 and variance 1."""
    mean, var = state
    assert_within(mean, np.zeros(mean.shape), 0, clause="BN-4.3", context=context, what="initial running mean")
    assert_within(var, np.ones(var.shape), 0, clause="BN-4.3", context=context, what="initial running variance")


def check_running_update(case, x, training, old, new, result, steps, trained, context, label,
                         propagation_clause=None):
    """BN-3 / NUM-1.5: the running statistics after one step, from the layer's own previous state
    (an infinite one may become NaN, NUM-4.3)."""
    if old[0] is None:
        return
    if not training:
        for name, before, after in (("running mean", old[0], new[0]), ("running variance", old[1], new[1])):
            assert_within(after, before, 0, clause="BN-3", context=context, what=f"{name} after {label}")
        return
    dtype = numpy_dtype(case.dtype)
    alpha = 1.0 / (trained + 1) if case.momentum is None else case.momentum
    channel_axis = case.channel_axis % x.ndim
    others = tuple(i for i in range(x.ndim) if i != channel_axis)
    samples = x.shape[0] if case.op == "instance_norm" else 0  # IN-3 averages N instance statistics
    terms = tolerance.batch_statistic_terms(steps, shape=x.shape, channel_axis=channel_axis, samples=samples,
                                            input_dtype=dtype)
    statistic_dtype = numpy_dtype(case.parameter_dtype)
    # NUM-4.2: statistics updated from a slice holding +-Inf (and no NaN) may be NaN or +-Inf.
    x64 = x.astype(np.float64)
    infinite = np.isinf(x64).any(axis=others) & ~np.isnan(x64).any(axis=others)
    route = ClauseRouting("BN-4.2" if case.momentum is None else "NUM-1.5", propagation=propagation_clause)
    for (name, (batch, error)), before, after, expected in zip(
            terms.items(), old, new, (result.running_mean, result.running_var)):
        expected = np.where(infinite & ~np.isfinite(after), after, expected)
        bound = tolerance.running_bound(alpha=alpha, old=before, batch_statistic=batch, new=expected,
                                        batch_error=error, input_dtype=dtype, statistic_dtype=statistic_dtype)
        assert_within(after, expected, bound, clause=route, context=context, what=f"{name} after {label}",
                      dtype=statistic_dtype, nan_allowed=oracle.running_nan_allowed(before, alpha))


def observe(adapter: Adapter, case: Case, device: str, *, what: str = "output") -> np.ndarray:
    """The adapter's output for the first step of `case` (shape and dtype checked), as float64."""
    x = case.inputs[0]
    context = Context(adapter.id, case.op, case.dtype, device, x.shape, case=case)
    with adapter_call(context, what, OPS[case.op].defining_clause, unchanged=arrays_kept_unchanged(case, x=x)):
        observed = make_layer(adapter, case, device)(x, training=case.training[0])
    observed = check_array(observed, shape=x.shape, dtype=numpy_dtype(case.dtype), context=context, what=what)
    return observed.astype(np.float64)
