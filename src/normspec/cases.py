"""A test case and how it runs: the one place where conventions are translated.

A Case holds everything one differential check needs: the op, the dtype, the
inputs of each step (one step for ops without state), whether each step trains,
the op's attributes and parameters. `run_case` builds the adapter's layer,
feeds the steps and checks every output and running statistic against the
reference within the bound of NUM-1.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np

from normspec import tolerance
from normspec.adapters import Adapter
from normspec.compare import Context, adapter_call, assert_within, check_array
from normspec.registry import OPS, slice_ids


@dataclass
class Case:
    op: str
    dtype: str
    inputs: list  # one array per step, in the adapter's layout
    training: list  # one bool per step
    eps: float
    attrs: dict = field(default_factory=dict)  # normalized_shape / num_groups
    params: dict = field(default_factory=dict)  # weight, bias, running_mean, running_var (or None)
    momentum: float | None = 0.1  # the spec's new-batch weight alpha (BN-4.1); None = cumulative (BN-4.2)
    channel_axis: int = 1
    exact_statistics: bool = False  # NUM-1.4 inputs
    family: str = ""
    cotangent: np.ndarray | None = None  # dy of a backward case (normspec.backward), the input's shape and dtype

    @property
    def shape(self) -> tuple:
        return self.inputs[0].shape

    def save(self, path) -> None:
        """Write the case as .npz (loads without pickle)."""
        arrays = {f"input_{i}": x.astype(np.float64) for i, x in enumerate(self.inputs)}
        arrays.update({f"param_{k}": v.astype(np.float64) for k, v in self.params.items() if v is not None})
        if self.cotangent is not None:
            arrays["cotangent"] = self.cotangent.astype(np.float64)
        meta = repr({"op": self.op, "dtype": self.dtype, "training": self.training, "eps": self.eps,
                     "attrs": self.attrs, "momentum": self.momentum, "channel_axis": self.channel_axis,
                     "exact_statistics": self.exact_statistics, "family": self.family,
                     "params": sorted(self.params)})
        np.savez(path, meta=np.array(meta), **arrays)

    @classmethod
    def load(cls, path) -> "Case":
        import ast
        with np.load(path, allow_pickle=False) as data:
            meta = ast.literal_eval(str(data["meta"]))
            dtype = np.dtype(ml_dtypes.bfloat16) if meta["dtype"] == "bfloat16" else np.dtype(meta["dtype"])
            inputs = [data[f"input_{i}"].astype(dtype) for i in range(len(meta["training"]))]
            params = {k: data[f"param_{k}"].astype(dtype) if f"param_{k}" in data else None for k in meta.pop("params")}
            cotangent = data["cotangent"].astype(dtype) if "cotangent" in data else None
        return cls(inputs=inputs, params=params, cotangent=cotangent, **meta)


def numpy_dtype(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def adapter_momentum(adapter: Adapter, alpha: float | None) -> float | None:
    """BN-4.1: translate the spec's alpha into the adapter's momentum convention."""
    if alpha is None or adapter.conventions.momentum_weights == "new_batch":
        return alpha
    return 1.0 - alpha


def effective_alpha(adapter: Adapter, alpha: float | None) -> float | None:
    """The new-batch weight the adapter really applies: 1 - m for the m it is given, which
    differs from alpha in the last bits (the reference uses this value)."""
    momentum = adapter_momentum(adapter, alpha)
    if momentum is None or adapter.conventions.momentum_weights == "new_batch":
        return momentum
    return 1.0 - momentum


def given_arrays(case: Case, **arrays) -> dict:
    """The arrays a call on `case` is given and must leave unchanged (GEN-6): those passed
    (x; dy for a VJP) and the affine parameters. adapter_call compares and restores them."""
    return dict(arrays, weight=case.params.get("weight"), bias=case.params.get("bias"))


def make_layer(adapter: Adapter, case: Case, device: str):
    """The adapter's implementation of case.op as a callable f(x, training) -> output,
    with `running_stats()` for stateful ops."""
    p = case.params
    if OPS[case.op].stateful:
        build = getattr(adapter, f"{case.op}_layer")
        channels = case.shape[case.channel_axis]
        # Copies: the running statistics become the layer's state, which it may update in place (GEN-6).
        state = {name: None if p.get(name) is None else p[name].copy() for name in ("running_mean", "running_var")}
        return build(num_features=channels, dtype=case.dtype, weight=p.get("weight"), bias=p.get("bias"), **state,
                     momentum=adapter_momentum(adapter, case.momentum), eps=case.eps, device=device)
    function = getattr(adapter, case.op)
    kwargs = dict(case.attrs, weight=p.get("weight"), eps=case.eps, device=device)
    if case.op != "rms_norm":
        kwargs["bias"] = p.get("bias")
    return _Stateless(function, kwargs)


class _Stateless:
    def __init__(self, function, kwargs):
        self.function, self.kwargs = function, kwargs

    def __call__(self, x, *, training: bool):
        return self.function(x, **self.kwargs)


def reference_arguments(case: Case, running_mean, running_var, training: bool, steps_so_far: int,
                        estimator: str) -> dict:
    """The keyword arguments (all but x) of the op's reference, and of its `<op>_vjp`
    after dy, for one step of `case` from the given running statistics."""
    row, p = OPS[case.op], case.params
    arguments = dict(weight=p.get("weight"), eps=case.eps, **case.attrs)
    if row.channel_axis:
        arguments["channel_axis"] = case.channel_axis
    if case.op != "rms_norm":
        arguments["bias"] = p.get("bias")
    if row.stateful:
        arguments.update(running_mean=running_mean, running_var=running_var, momentum=case.momentum,
                         running_var_estimator=estimator)
    if case.op == "batch_norm":
        arguments.update(training=training, num_batches_tracked=steps_so_far)
    elif case.op == "instance_norm":
        arguments["use_input_stats"] = training or running_mean is None
    return arguments


def reference_step(case: Case, x, running_mean, running_var, training: bool, steps_so_far: int, estimator: str):
    """The reference's (float64) result and Steps for one step of `case`."""
    row = OPS[case.op]
    arguments = reference_arguments(case, running_mean, running_var, training, steps_so_far, estimator)
    result, steps = row.reference(x, **arguments, exact=True, return_steps=True)
    return (result if row.stateful else _Plain(result)), steps


class _Plain:
    def __init__(self, output):
        self.output, self.running_mean, self.running_var = output, None, None


def run_case(adapter: Adapter, case: Case, device: str, *, clause: str = "NUM-1.1",
             nonfinite_clause: str | None = None, propagation_clause: str | None = None,
             context: Context | None = None) -> list:
    """Run every step of `case` on `adapter` and check it against the reference: outputs
    within the bound of NUM-1.1 (cited as `clause`; a NaN or Inf where a finite value is
    due cites `nonfinite_clause`, a wrong value where NaN or Inf is due `propagation_clause`,
    default NUM-4.1/NUM-4.2), running statistics within NUM-1.5.
    Returns the observed outputs; raises NonConformance."""
    context = context or Context(adapter.id, case.op, case.dtype, device, case.shape,
                                 case=case)
    dtype = numpy_dtype(case.dtype)
    estimator = adapter.conventions.running_var_estimator
    reference_case = dataclasses.replace(case, momentum=effective_alpha(adapter, case.momentum))
    stateful, op_clause = OPS[case.op].stateful, OPS[case.op].clauses[0]
    with adapter_call(context, "layer construction", op_clause, unchanged=given_arrays(case)):
        layer = make_layer(adapter, case, device)
        state = _state(layer, case, stateful, dtype, context, initial=True)
    outputs, trained = [], 0
    for step, (x, training) in enumerate(zip(case.inputs, case.training)):
        label = f"step {step + 1} ({'training' if training else 'evaluation'})" if stateful else ""
        with adapter_call(context, f"call {label}".strip(), op_clause, unchanged=given_arrays(case, x=x)):
            observed = layer(x, training=training)
        observed = check_array(observed, shape=x.shape, dtype=dtype, context=context, what=f"output {label}".strip())
        result, steps = reference_step(reference_case, x, *state, training, trained, estimator)
        bound = output_bound(case, steps, result.output)
        assert_within(observed, result.output, bound, clause=clause, context=context, what=f"output {label}".strip(),
                      dtype=dtype, nonfinite_clause=nonfinite_clause, nan_allowed=_nan_allowed(case, x),
                      nonfinite_allowed=_infinite_gamma_at_zero(case, steps), propagation_clause=propagation_clause)
        outputs.append(observed)
        if stateful:
            with adapter_call(context, "running_stats()", op_clause):
                new_state = _state(layer, case, stateful, dtype, context)
            _check_running(reference_case, x, training, state, new_state, result, steps, trained, context, label,
                           propagation_clause)
            state = new_state
        trained += bool(training)
    return outputs


def _nan_allowed(case: Case, x) -> np.ndarray | None:
    """NUM-4.2: in an RMSNorm slice holding +-Inf, a finite element may give NaN instead of beta."""
    if case.op != "rms_norm" or not np.isinf(x.astype(np.float64)).any():
        return None
    ids = slice_ids(case.op, x.shape, case.attrs, case.channel_axis)
    infinite_slices = np.unique(ids[np.isinf(x.astype(np.float64))])
    return np.isin(ids, infinite_slices)


def _infinite_gamma_at_zero(case: Case, steps) -> np.ndarray | None:
    """NUM-4.3: where gamma is infinite and the exact normalized value is within its error
    e_x_hat of 0 (NUM-1.1), the computed one may be 0 or either sign: NaN or +-Inf."""
    gamma, _ = _affine_parameters(case, steps.normalized.ndim)
    if gamma is None or np.isfinite(gamma).all():
        return None
    with np.errstate(invalid="ignore"):
        near_zero = np.abs(steps.normalized) <= tolerance.normalized_error(steps, input_dtype=numpy_dtype(case.dtype))
    return np.broadcast_to(np.isinf(gamma), steps.normalized.shape) & near_zero


def _affine_parameters(case: Case, ndim: int):
    """weight and bias as float64 arrays that broadcast against the input (None where absent)."""
    shape = [1] * ndim
    if OPS[case.op].channel_axis:
        shape[case.channel_axis] = -1

    def prepared(a):
        if a is None:
            return None
        a = a.astype(np.float64)
        return a.reshape(shape) if OPS[case.op].channel_axis else a
    return prepared(case.params.get("weight")), prepared(case.params.get("bias"))


def output_bound(case: Case, steps, output):
    """NUM-1.1's bound for the output of one step of `case`, from the reference's Steps."""
    weight, bias = _affine_parameters(case, output.ndim)
    return tolerance.output_bound(steps, output, weight, bias, input_dtype=numpy_dtype(case.dtype))


def _state(layer, case: Case, stateful: bool, dtype, context: Context, initial: bool = False):
    """The layer's running statistics as float64 arrays (None, None) when it keeps none."""
    if not stateful:
        return None, None
    mean, var = layer.running_stats()
    tracking = case.op == "batch_norm" or case.params.get("running_mean") is not None
    if not tracking:
        return None, None
    channels = case.shape[case.channel_axis]
    values = []
    for name, value in (("running mean", mean), ("running variance", var)):
        value = check_array(value, shape=(channels,), dtype=dtype, context=context, what=name)
        values.append(value.astype(np.float64))
    if initial and case.params.get("running_mean") is None:
        # BN-4.3: a fresh layer starts at mean 0 and variance 1.
        assert_within(values[0], np.zeros(channels), 0, clause="BN-4.3", context=context, what="initial running mean")
        assert_within(values[1], np.ones(channels), 0, clause="BN-4.3", context=context,
                      what="initial running variance")
    return tuple(values)


def _check_running(case, x, training, old, new, result, steps, trained, context, label, propagation_clause=None):
    """BN-3 / NUM-1.5: the running statistics after one step, from the layer's own previous state."""
    if old[0] is None:
        return
    if not training:
        for name, before, after in (("running mean", old[0], new[0]), ("running variance", old[1], new[1])):
            assert_within(after, before, 0, clause="BN-3", context=context, what=f"{name} after {label}")
        return
    dtype = numpy_dtype(case.dtype)
    u = tolerance.compute_roundoff(dtype)
    alpha = 1.0 / (trained + 1) if case.momentum is None else case.momentum
    others = tuple(i for i in range(x.ndim) if i != case.channel_axis % x.ndim)
    n = steps.reduction_length
    estimator = n / (n - 1) if n > 1 else 1.0  # the larger of the two estimators (BN-4.4)
    mean_error, var_error = tolerance.batch_statistic_errors(steps, input_dtype=dtype)

    def per_channel(values):  # mean over the slices of a channel (one for BatchNorm, N for InstanceNorm)
        return np.mean(np.broadcast_to(values, x.shape), axis=others)

    batch_mean = per_channel(np.abs(steps.mean))
    batch_var = per_channel(steps.variance) * estimator
    # NUM-1.5: the variance's error has a second-order term delta_mu^2 (alone for a
    # constant slice, whose computed mean need not equal its value, NUM-3.2).
    mean_error_sq = per_channel(mean_error**2) * estimator
    # NUM-4.2: statistics updated from a slice holding +-Inf (and no NaN) may be NaN or +-Inf.
    x64 = x.astype(np.float64)
    infinite = np.isinf(x64).any(axis=others) & ~np.isnan(x64).any(axis=others)
    samples = x.shape[0] if case.op == "instance_norm" else 0  # IN-3 averages N instance statistics
    for name, before, after, expected, batch, error in (
            ("running mean", old[0], new[0], result.running_mean, batch_mean, per_channel(mean_error)),
            ("running variance", old[1], new[1], result.running_var, batch_var,
             per_channel(var_error) * estimator + mean_error_sq)):
        if samples:
            error = error + (samples + 1) * u * batch
        expected = np.where(infinite & ~np.isfinite(after), after, expected)
        bound = tolerance.running_bound(alpha=alpha, old=before, batch_statistic=batch, new=expected,
                                        batch_error=error, input_dtype=dtype)
        clause = "BN-4.2" if case.momentum is None else "NUM-1.5"
        assert_within(after, expected, bound, clause=clause, context=context, what=f"{name} after {label}",
                      dtype=dtype, propagation_clause=propagation_clause)


def observe(adapter: Adapter, case: Case, device: str, *, what: str = "output") -> np.ndarray:
    """The adapter's output for the first step of `case` (shape and dtype checked), as float64."""
    x = case.inputs[0]
    context = Context(adapter.id, case.op, case.dtype, device, x.shape,
                      case=case)
    with adapter_call(context, what, OPS[case.op].clauses[0], unchanged=given_arrays(case, x=x)):
        observed = make_layer(adapter, case, device)(x, training=case.training[0])
    observed = check_array(observed, shape=x.shape, dtype=numpy_dtype(case.dtype), context=context, what=what)
    return observed.astype(np.float64)


def initial_state(case: Case):
    """The running statistics the first step of `case` starts from: the configured ones, or
    a fresh BatchNorm's mean 0 and variance 1 (BN-4.3); (None, None) for a layer without."""
    p = case.params
    mean, var = p.get("running_mean"), p.get("running_var")
    if case.op == "batch_norm" and mean is None:
        channels = case.shape[case.channel_axis]
        return np.zeros(channels), np.ones(channels)
    return mean, var


def first_step_bound(case: Case, estimator: str = "biased") -> np.ndarray:
    """NUM-1.1's bound for the first step of `case` from its configured (or initial) state."""
    result, steps = reference_step(case, case.inputs[0], *initial_state(case), case.training[0], 0, estimator)
    return output_bound(case, steps, result.output)
