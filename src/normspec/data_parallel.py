"""The driver of the data-parallel ops (spec/ops/sync_batch_norm.md, DP): a case of R shards, its
steps run on the adapter's replicated layer through the harness, and every replica's output and
running statistics checked against the reference on the concatenated global batch (DP-3, DP-4)
within DP-6's bounds from normspec.tolerance (docs/design/data-parallel.md)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from normspec import tolerance
from normspec.compare import Context, NonConformance, assert_within, check_array
from normspec.conventions import adapter_momentum, effective_alpha
from normspec.dtypes import numpy_dtype
from normspec.failures import array_source
from normspec.harness import adapter_call
from normspec.registry import DATA_PARALLEL
from normspec.strategies import FAMILIES, SEEDS, fill

# Every value family of the layers' strategies, large offsets included, filled over the global batch.
SYNC_FAMILIES = FAMILIES
_EPS = (1e-5, 1e-3)
_ALPHAS = (0.1, 0.5, 1.0)


@dataclass(frozen=True)
class SyncCase:
    """R shards per step in the adapter's layout, and the layer's configuration (alpha is the spec's
    new-batch weight; running statistics None: the fresh layer's state, BN-4.3)."""

    op: str
    dtype: str
    channel_axis: int
    steps: tuple  # per step, the tuple of R shards
    training: tuple  # per step
    eps: float
    alpha: float
    weight: np.ndarray | None
    bias: np.ndarray | None
    family: str
    seed: int
    param_dtype: str | None = None  # the parameters' and running statistics' dtype if not the input's (NUM-2.3)

    @property
    def parameter_dtype(self) -> str:
        return self.param_dtype or self.dtype

    @property
    def mixed_keyword(self) -> dict:
        """`param_dtype=` for the adapter's methods, passed only in a mixed-precision case (as
        normspec.conventions does), so adapters that declare no pairs keep their signatures."""
        return {"param_dtype": self.param_dtype} if self.param_dtype not in (None, self.dtype) else {}

    @property
    def replicas(self) -> int:
        return len(self.steps[0])

    @property
    def sizes(self) -> list:
        return [shard.shape[0] for shard in self.steps[0]]

    @property
    def channels(self) -> int:
        return self.steps[0][0].shape[self.channel_axis]

    @property
    def global_shape(self) -> tuple:
        shape = list(self.steps[0][0].shape)
        shape[0] = sum(self.sizes)
        return tuple(shape)


def _shard_sizes(draw, replicas: int, kinds: tuple) -> list:
    """Equal sizes, or (where the adapter expresses them, DP-5) uneven sizes with single-sample and
    empty shards, at least two samples in all (BN-5.2 under the unbiased profile is BatchNorm's test)."""
    if "uneven" not in kinds or draw(st.booleans(), label="equal shards"):
        return [draw(st.integers(1, 4), label="shard size")] * replicas
    smallest = 0 if "empty" in kinds else 1
    sizes = st.lists(st.integers(smallest, 5), min_size=replicas, max_size=replicas).filter(lambda s: sum(s) >= 2)
    return draw(sizes, label="shard sizes")


@st.composite
def sync_cases(draw, adapter, *, op: str, dtype: str, param_dtype: str | None = None, families=SYNC_FAMILIES):
    """Two training steps and one evaluation step on R replicas (2 to the adapter's and the row's most),
    the shard sizes it can express, values of a drawn family over the global batch (large offsets
    included), eps, alpha and affine parameters (in `param_dtype` where given: NUM-2.3)."""
    row, caps = DATA_PARALLEL[op], adapter.capabilities
    replicas = draw(st.integers(row.min_replicas, min(row.max_replicas, caps.max_replicas)), label="replicas")
    sizes = _shard_sizes(draw, replicas, caps.shard_sizes)
    channels = draw(st.integers(1, 3), label="channels")
    spatial = draw(st.sampled_from([(), (3,)]), label="spatial dims")
    family = draw(st.sampled_from(families), label="family")
    seed = draw(SEEDS, label="seed")
    eps = draw(st.sampled_from(_EPS), label="eps")
    rng = np.random.default_rng(seed)
    np_dtype = numpy_dtype(dtype)
    canonical = (sum(sizes), channels, *spatial)
    ids = np.broadcast_to(np.arange(channels).reshape(1, -1, *([1] * len(spatial))), canonical)
    channel_axis = adapter.conventions.channel_axis % len(canonical)
    steps = []
    for _ in range(3):
        values = np.moveaxis(fill(rng, family, canonical, ids, np_dtype, eps), 1, channel_axis)
        steps.append(tuple(np.split(np.ascontiguousarray(values), np.cumsum(sizes)[:-1], axis=0)))
    affine = draw(st.booleans(), label="affine")
    parameter_dtype = numpy_dtype(param_dtype or dtype)
    weight = rng.uniform(0.5, 2.0, channels).astype(parameter_dtype) if affine else None
    bias = rng.uniform(-1.0, 1.0, channels).astype(parameter_dtype) if affine else None
    return SyncCase(op, dtype, channel_axis, tuple(steps), (True, True, False), eps,
                    draw(st.sampled_from(_ALPHAS), label="alpha"), weight, bias, family, seed, param_dtype)


class SyncContext(Context):
    """A Context whose reproduction runs the case's steps on the adapter's replicated layer."""

    def __init__(self, adapter_id: str, case: SyncCase, device: str, cotangents: list | None = None,
                 running: tuple | None = None):
        super().__init__(adapter_id, case.op, case.dtype, device, case.global_shape)
        self.sync_case, self.cotangents, self.running = case, cotangents, running

    def header(self, what: str) -> str:
        return f"{super().header(what)}, {self.sync_case.replicas} replicas with shard sizes {self.sync_case.sizes}"

    def fail(self, clause: str, what: str, detail: str, worst: tuple | None = None):
        reproduce = (reproduction(self.adapter, self.sync_case, self.device, self.running) if self.cotangents is None
                     else vjp_reproduction(self.adapter, self.sync_case, self.cotangents, self.device))
        raise NonConformance(clause, f"{self.header(what)}\n  {detail}", self, worst, reproduce=reproduce)


def reproduction(adapter_id: str, case: SyncCase, device: str, running: tuple | None = None) -> str:
    """Python that runs the case's steps on the adapter (from the given running statistics, or a fresh
    state) and prints every replica's outputs and running statistics beside the reference's (inline
    for small cases, else the check command)."""
    from normspec.adapters import LOADED
    target = LOADED.get(adapter_id, adapter_id)
    if sum(shard.size for step in case.steps for shard in step) > 256:
        return (f"normspec check {target} --ops {case.op} --dtypes {case.dtype} --devices {device}"
                f"  # failing case: seed {case.seed}, family {case.family}, shard sizes {case.sizes}")
    steps = ",\n         ".join("[" + ", ".join(array_source(s) for s in step) + "]" for step in case.steps)
    weight = array_source(case.weight)
    bias = array_source(case.bias)
    given = "None, None" if running is None else f"{array_source(running[0])}, {array_source(running[1])}"
    mixed = "".join(f", {k}={v!r}" for k, v in case.mixed_keyword.items())
    return ("import numpy as np\nfrom normspec import reference\nfrom normspec.adapters import load_adapter\n"
            "from normspec.conventions import adapter_momentum, effective_alpha\n"
            f"adapter = load_adapter({target!r})\n"
            f"steps = [{steps}]\n"
            f"weight, bias = {weight}, {bias}\n"
            f"mean, var, k = {given}, 0\n"
            f"layer = adapter.sync_batch_norm_layer(replicas={case.replicas}, num_features={case.channels}, "
            f"dtype={case.dtype!r}, weight=weight, bias=bias, running_mean=mean, running_var=var, "
            f"momentum=adapter_momentum(adapter, {case.alpha!r}), eps={case.eps!r}, device={device!r}{mixed})\n"
            f"for shards, training in zip(steps, {case.training!r}):\n"
            "    print('outputs:', layer(shards, training=training))\n"
            "    print('running statistics per replica:', layer.running_stats())\n"
            f"    ref = reference.sync_batch_norm(shards, weight, bias, mean, var, training=training, "
            f"momentum=effective_alpha(adapter, {case.alpha!r}), eps={case.eps!r}, channel_axis={case.channel_axis}, "
            "running_var_estimator=adapter.conventions.running_var_estimator, num_batches_tracked=k, exact=True)\n"
            "    print('exact outputs:', ref.outputs)\n"
            "    print('exact running statistics:', ref.running_mean, ref.running_var)\n"
            "    mean, var, k = ref.running_mean, ref.running_var, ref.num_batches_tracked")


def vjp_reproduction(adapter_id: str, case: SyncCase, cotangents: list, device: str) -> str:
    """Python that runs the adapter's per-shard VJP of the case's first shards and prints it beside the
    reference's (inline for small cases, else the check command)."""
    from normspec.adapters import LOADED
    target = LOADED.get(adapter_id, adapter_id)
    shards = case.steps[0]
    if 2 * sum(shard.size for shard in shards) > 256:
        return (f"normspec check {target} --ops {case.op} --dtypes {case.dtype} --devices {device}"
                f"  # failing case: seed {case.seed}, family {case.family}, shard sizes {case.sizes}")
    weight = array_source(case.weight)
    bias = array_source(case.bias)
    return ("import numpy as np\nfrom normspec import reference\nfrom normspec.adapters import load_adapter\n"
            f"adapter = load_adapter({target!r})\n"
            f"shards = [{', '.join(array_source(s) for s in shards)}]\n"
            f"cotangents = [{', '.join(array_source(c) for c in cotangents)}]\n"
            f"weight, bias = {weight}, {bias}\n"
            f"print(adapter.sync_batch_norm_vjp(shards, cotangents, weight=weight, bias=bias, eps={case.eps!r}, "
            f"device={device!r}{''.join(f', {k}={v!r}' for k, v in case.mixed_keyword.items())}))\n"
            f"print(reference.sync_batch_norm_vjp(shards, cotangents, weight, bias, training=True, eps={case.eps!r}, "
            f"channel_axis={case.channel_axis}, exact=True))")


def _affine(case: SyncCase, ndim: int):
    shape = [1] * ndim
    shape[case.channel_axis] = -1
    return tuple(None if p is None else p.astype(np.float64).reshape(shape) for p in (case.weight, case.bias))


def read_replica_stats(layer, case: SyncCase, context: Context) -> list:
    """Every replica's (running mean, running variance) as float64, count, shapes and dtypes (the
    parameters', NUM-2.2) checked."""
    with adapter_call(context, "running_stats()", "DP-4"):
        stats = layer.running_stats()
    if not isinstance(stats, (list, tuple)) or len(stats) != case.replicas:
        context.fail("DP-4", "running_stats()", f"returned {type(stats).__name__} of length "
                     f"{len(stats) if hasattr(stats, '__len__') else '?'}; expected one (mean, var) pair per "
                     f"replica, {case.replicas}")
    dtype = numpy_dtype(case.parameter_dtype)
    return [tuple(check_array(value, shape=(case.channels,), dtype=dtype, context=context,
                              what=f"replica {r} {name}").astype(np.float64)
                  for name, value in zip(("running mean", "running variance"), pair))
            for r, pair in enumerate(stats)]


def check_replicas_agree(stats: list, context: Context, label: str) -> None:
    """DP-4: every replica's running statistics equal replica 0's, bit for bit."""
    for r, pair in enumerate(stats[1:], start=1):
        for name, value, first in zip(("running mean", "running variance"), pair, stats[0]):
            assert_within(value, first, 0.0, clause="DP-4", context=context,
                          what=f"replica {r} {name} after {label}, against replica 0's")


def restored_running_stats(case: SyncCase) -> tuple:
    """Running statistics as a checkpoint restores them (DP-1: the same on every replica): a mean of
    the data's scale and a variance in [0.5, 2], in the case's dtype, from the case's seed."""
    rng = np.random.default_rng(case.seed + 1)
    values = np.concatenate([s.astype(np.float64).ravel() for s in case.steps[0]])
    scale = float(np.abs(values[np.isfinite(values)]).max(initial=1.0))
    dtype = numpy_dtype(case.parameter_dtype)
    return (rng.uniform(-scale, scale, case.channels).astype(dtype), rng.uniform(0.5, 2.0, case.channels).astype(dtype))


def run_sync_case(adapter, case: SyncCase, device: str, running: tuple | None = None) -> list:
    """Run every step of `case` on the adapter's replicated layer and check it (DP-1 .. DP-6), from a
    fresh layer's state (BN-4.3) or from the given `running` (mean, variance) on every replica.
    Returns the observed outputs per step; raises NonConformance."""
    row = DATA_PARALLEL[case.op]
    context = SyncContext(adapter.id, case, device, running=running)
    dtype = numpy_dtype(case.dtype)
    estimator = adapter.conventions.running_var_estimator
    alpha = effective_alpha(adapter, case.alpha)
    uneven = len(set(case.sizes)) > 1
    call_clause = "DP-5" if uneven else row.defining_clause
    given_mean, given_var = (None, None) if running is None else running
    unchanged = {"weight": case.weight, "bias": case.bias, "running mean": given_mean, "running variance": given_var}
    with adapter_call(context, "layer construction", call_clause, unchanged=unchanged):
        layer = adapter.sync_batch_norm_layer(
            replicas=case.replicas, num_features=case.channels, dtype=case.dtype, weight=case.weight, bias=case.bias,
            running_mean=given_mean, running_var=given_var, momentum=adapter_momentum(adapter, case.alpha),
            eps=case.eps, device=device, **case.mixed_keyword)
    stats = read_replica_stats(layer, case, context)
    check_replicas_agree(stats, context, "construction")
    if running is None:
        for name, value, initial in zip(("running mean", "running variance"), stats[0], (0.0, 1.0)):
            assert_within(value, np.full(value.shape, initial), 0.0, clause="BN-4.3", context=context,
                          what=f"initial {name}")
    else:
        for name, value, given in zip(("running mean", "running variance"), stats[0], running):
            assert_within(value, given.astype(np.float64), 0.0, clause="DP-1", context=context,
                          what=f"{name} after construction with it given (a restored checkpoint)")
    observed_steps, trained = [], 0
    for step, (shards, training) in enumerate(zip(case.steps, case.training)):
        label = f"step {step + 1} ({'training' if training else 'evaluation'})"
        given = {f"shard {r}": shard for r, shard in enumerate(shards)}
        with adapter_call(context, f"call {label}", call_clause, unchanged=given):
            outputs = layer(list(shards), training=training)
        if not isinstance(outputs, (list, tuple)) or len(outputs) != case.replicas:
            context.fail("DP-3", f"output {label}", f"returned {type(outputs).__name__}; expected a list of "
                                                    f"{case.replicas} outputs, one per replica")
        outputs = [check_array(o, shape=s.shape, dtype=dtype, context=context, what=f"replica {r} output {label}")
                   for r, (o, s) in enumerate(zip(outputs, shards))]
        mean, var = stats[0]
        result, steps = row.reference(
            list(shards), case.weight, case.bias, mean, var, training=training, momentum=alpha, eps=case.eps,
            channel_axis=case.channel_axis, running_var_estimator=estimator, num_batches_tracked=trained,
            exact=True, return_steps=True)
        observed = np.concatenate([o.astype(np.float64) for o in outputs], axis=0)
        expected = np.concatenate(result.outputs, axis=0)
        weight, bias = _affine(case, observed.ndim)
        bound = tolerance.output_bound(steps, expected, weight, bias, input_dtype=dtype,
                                       replicas=case.replicas if training else None)
        assert_within(observed, expected, bound, clause="DP-3", context=context,
                      what=f"outputs of all replicas, concatenated, {label}", dtype=dtype)
        new_stats = read_replica_stats(layer, case, context)
        check_replicas_agree(new_stats, context, label)
        check_global_update(case, training, stats[0], new_stats[0], result, steps, alpha, context, label)
        stats, trained = new_stats, trained + bool(training)
        observed_steps.append(outputs)
    return observed_steps


def check_global_update(case: SyncCase, training: bool, old, new, result, steps, alpha, context, label) -> None:
    """DP-4: replica 0's running statistics after the step are the BN-4 update from the global
    statistics (DP-2: global mean, global-count estimator) within NUM-1.5 with DP-6's budget, or
    unchanged by an evaluation step."""
    names = ("running mean", "running variance")
    if not training:
        for name, before, after in zip(names, old, new):
            assert_within(after, before, 0.0, clause="DP-4", context=context, what=f"{name} after {label}")
        return
    dtype, statistic_dtype = numpy_dtype(case.dtype), numpy_dtype(case.parameter_dtype)
    shape = case.global_shape
    terms = tolerance.batch_statistic_terms(steps, shape=shape, channel_axis=case.channel_axis, samples=0,
                                            input_dtype=dtype, replicas=case.replicas)
    for (name, (batch, error)), before, after, expected in zip(terms.items(), old, new,
                                                               (result.running_mean, result.running_var)):
        bound = tolerance.running_bound(alpha=alpha, old=before, batch_statistic=batch, new=expected,
                                        batch_error=error, input_dtype=dtype, statistic_dtype=statistic_dtype)
        assert_within(after, expected, bound, clause="DP-4", context=context,
                      what=f"{name} after {label} (global statistics, DP-2)", dtype=statistic_dtype)


def run_sync_vjp(adapter, case: SyncCase, cotangents: list, device: str) -> None:
    """DP-7: the adapter's per-shard VJP of a training call on the case's first shards: every replica's
    input gradient is its rows of the global batch's GRAD-3 gradient, and the replicas' parameter
    gradients sum to the global GRAD-2 ones, within GRAD-6 with DP-6's budget."""
    row = DATA_PARALLEL[case.op]
    context = SyncContext(adapter.id, case, device, cotangents)
    dtype = numpy_dtype(case.dtype)
    shards = list(case.steps[0])
    given = {**{f"shard {r}": s for r, s in enumerate(shards)}, **{f"cotangent {r}": c for r, c in enumerate(cotangents)}}
    with adapter_call(context, "sync_batch_norm_vjp", "DP-7", unchanged=given):
        observed = adapter.sync_batch_norm_vjp(shards, cotangents, weight=case.weight, bias=case.bias, eps=case.eps,
                                               device=device, **case.mixed_keyword)
    if not isinstance(observed, dict) or len(observed.get("x") or ()) != case.replicas:
        context.fail("DP-7", "vjp", f"returned {type(observed).__name__}; expected a dict whose 'x' lists one input "
                                    f"gradient per replica ({case.replicas})")
    dx = [check_array(g, shape=s.shape, dtype=dtype, context=context, what=f"replica {r} input gradient",
                      shape_clause="GRAD-1", dtype_clause="GRAD-8.2").astype(np.float64)
          for r, (g, s) in enumerate(zip(observed["x"], shards))]
    kwargs = dict(training=True, eps=case.eps, channel_axis=case.channel_axis)
    _, steps = row.reference(shards, case.weight, case.bias, exact=True, return_steps=True, momentum=0.1, **kwargs)
    gradient = row.vjp(shards, cotangents, case.weight, case.bias, exact=True, **kwargs)
    dy = np.concatenate(cotangents, axis=0).astype(np.float64)
    exact = {**gradient, "x": np.concatenate(gradient["x"], axis=0)}
    weight, _ = _affine(case, dy.ndim)
    ids = np.indices(dy.shape)[case.channel_axis]  # BatchNorm's slice of each element: its channel
    parameter_dtype = numpy_dtype(case.parameter_dtype)  # GRAD-8.2: each parameter gradient in its parameter's dtype
    bounds = tolerance.vjp_bounds(steps, dy, weight, exact, slice_ids=ids, parameter_axes=(case.channel_axis,),
                                  input_dtype=dtype, weight_dtype=parameter_dtype, bias_dtype=parameter_dtype,
                                  replicas=case.replicas)
    assert_within(np.concatenate(dx, axis=0), exact["x"], bounds["x"], clause="DP-7", context=context,
                  what="input gradients of all replicas, concatenated", dtype=dtype)
    for name, given_parameter in (("weight", case.weight), ("bias", case.bias)):
        per_replica = observed.get(name)
        if given_parameter is None:
            if per_replica is not None and any(g is not None for g in per_replica):
                context.fail("GRAD-7.2", f"{name} gradient", "returned one for an absent parameter")
            continue
        if per_replica is None or len(per_replica) != case.replicas:
            context.fail("DP-7", f"{name} gradients", f"expected one per replica ({case.replicas})")
        gradients = [check_array(g, shape=(case.channels,), dtype=parameter_dtype, context=context,
                                 what=f"replica {r} {name} gradient", shape_clause="GRAD-1",
                                 dtype_clause="GRAD-8.2").astype(np.float64) for r, g in enumerate(per_replica)]
        bound = bounds[name] + tolerance.replica_sum_rounding(gradients, parameter_dtype)
        assert_within(sum(gradients), exact[name], bound, clause="DP-7", context=context,
                      what=f"{name} gradients summed over the replicas", dtype=parameter_dtype)
