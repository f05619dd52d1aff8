"""The backward pass of a Case (spec/gradients.md): where the suite calls an adapter's
`vjp` and holds it to the reference within the error model of GRAD-6.

A backward case is a one-step Case with a `cotangent` (dy, in the adapter's layout and
the input dtype). The reference's exact VJP comes from the op's `<op>_vjp` with the
arguments of its forward (`normspec.oracle.reference_arguments`), so conventions are
translated in the same one place as for the forward.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from normspec import tolerance
from normspec.adapters import Adapter
from normspec.cases import Case
from normspec.conventions import arrays_kept_unchanged, effective_alpha
from normspec.dtypes import numpy_dtype
from normspec.oracle import initial_state, reference_arguments
from normspec.compare import Context, assert_within, check_array
from normspec.harness import adapter_call
from normspec.registry import OPS, slice_ids

GRADIENTS = ("x", "weight", "bias")


def parameter_axes(case: Case) -> tuple:
    """The axes of x that the affine parameters span (GRAD-2)."""
    ndim = len(case.shape)
    if OPS[case.op].has_channel_axis:
        return (case.channel_axis % ndim,)
    k = len(case.attrs["normalized_shape"])
    return tuple(range(ndim - k, ndim))


def broadcast_weight(case: Case):
    """gamma as float64, shaped to broadcast against x (None without a weight)."""
    weight, axes = case.params.get("weight"), parameter_axes(case)
    if weight is None:
        return None
    return weight.astype(np.float64).reshape([n if a in axes else 1 for a, n in enumerate(case.shape)])


def frozen(case: Case) -> bool:
    """GRAD-5: evaluation with running statistics (BatchNorm, tracked InstanceNorm)."""
    return (OPS[case.op].stateful and not case.training[0]
            and (case.op == "batch_norm" or case.params.get("running_mean") is not None))


def reference(adapter: Adapter, case: Case):
    """The exact (float64) VJP of `case` for its cotangent, the forward Steps and the GRAD-6
    bounds: (gradient dict, steps, bounds dict)."""
    row = OPS[case.op]
    reference_case = dataclasses.replace(case, momentum=effective_alpha(adapter, case.momentum))
    arguments = reference_arguments(reference_case, *initial_state(case), case.training[0], 0,
                                    adapter.conventions.running_var_estimator)
    x = case.inputs[0]
    _, steps = row.reference(x, **arguments, exact=True, return_steps=True)
    gradient = row.vjp(x, case.cotangent, **arguments, exact=True)
    parameter_dtype = numpy_dtype(case.parameter_dtype)
    bounds = tolerance.vjp_bounds(steps, case.cotangent, broadcast_weight(case), gradient,
                                  input_dtype=numpy_dtype(case.dtype), weight_dtype=parameter_dtype,
                                  bias_dtype=parameter_dtype,
                                  slice_ids=slice_ids(case.op, case.shape, case.attrs, case.channel_axis),
                                  parameter_axes=parameter_axes(case), frozen=frozen(case))
    return gradient, steps, bounds


def observe_vjp(adapter: Adapter, case: Case, device: str, context: Context | None = None) -> dict:
    """The adapter's VJP for `case` as float64 arrays, after the checks of GRAD-7.2 (a
    gradient for x and for each present parameter, none for an absent one), GRAD-1 (shapes)
    and GRAD-8.2 (dtypes)."""
    context = context or Context(adapter.id, case.op, case.dtype, device, case.shape, case=case)
    p = case.params
    attrs = dict(case.attrs, **({"param_dtype": case.param_dtype} if case.mixed else {}))
    with adapter_call(context, "vjp", "GRAD-1", unchanged=arrays_kept_unchanged(case, x=case.inputs[0], dy=case.cotangent)):
        observed = adapter.vjp(case.op, case.inputs[0], case.cotangent, weight=p.get("weight"),
                               bias=p.get("bias"), running_mean=p.get("running_mean"),
                               running_var=p.get("running_var"), training=case.training[0], eps=case.eps,
                               device=device, **attrs)
    if not isinstance(observed, dict):
        context.fail("GRAD-7.2", "vjp", f"returned {type(observed).__name__}, not a dict with 'x', 'weight', 'bias'")
    gradients = {}
    for name in GRADIENTS:
        dtype = numpy_dtype(case.dtype if name == "x" else case.parameter_dtype)  # GRAD-8.2
        given = case.inputs[0] if name == "x" else p.get(name)
        value = observed.get(name)
        what = f"d{name} ({'training' if case.training[0] else 'evaluation'})" if OPS[case.op].stateful else f"d{name}"
        if given is None:
            if value is not None:
                context.fail("GRAD-7.2", what, "returned a gradient for a parameter the layer does not have")
            gradients[name] = None
            continue
        if value is None:
            context.fail("GRAD-7.2", what, "missing: every differentiable input present needs a gradient")
        value = check_array(value, shape=given.shape, dtype=dtype, context=context, what=what,
                            shape_clause="GRAD-1", dtype_clause="GRAD-8.2",
                            dtype_source="the input dtype" if name == "x" else "the parameter's dtype")
        gradients[name] = value.astype(np.float64)
    return gradients


def run_vjp_case(adapter: Adapter, case: Case, device: str, *, clause: str | None = None) -> dict:
    """Check the adapter's VJP for `case` against the reference: dx within GRAD-6.1
    (GRAD-6.2 with frozen statistics), dgamma and dbeta within GRAD-6.3; a test of one
    cause (e.g. GRAD-8.1) cites `clause` instead. Returns the observed gradients
    (float64); raises NonConformance."""
    if case.cotangent is None:
        raise ValueError("run_vjp_case needs a Case with a cotangent (normspec.strategies.backward_cases)")
    context = Context(adapter.id, case.op, case.dtype, device, case.shape, case=case)
    observed = observe_vjp(adapter, case, device, context)
    expected, _, bounds = reference(adapter, case)
    mode = ("evaluation" if frozen(case) else "training") if OPS[case.op].stateful else ""
    for name in GRADIENTS:
        if observed[name] is None:
            continue
        cited = clause or ("GRAD-6.3" if name != "x" else "GRAD-6.2" if frozen(case) else "GRAD-6.1")
        assert_within(observed[name], expected[name], bounds[name], clause=cited, context=context,
                      what=f"d{name} {mode}".strip(),
                      dtype=numpy_dtype(case.dtype if name == "x" else case.parameter_dtype))
    return observed

