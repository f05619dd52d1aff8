"""The one place where the spec's canonical case is translated into an adapter's calls,
from the conventions the adapter declares (adapters/base.py: Conventions)."""
from __future__ import annotations

from normspec.adapters import Adapter
from normspec.cases import Case
from normspec.registry import OPS


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


def arrays_kept_unchanged(case: Case, **arrays) -> dict:
    """The arrays a call on `case` is given and must leave unchanged (GEN-6): those passed
    (x; dy for a VJP) and the affine parameters. normspec.harness.adapter_call compares and
    restores them."""
    return dict(arrays, weight=case.params.get("weight"), bias=case.params.get("bias"))


def make_layer(adapter: Adapter, case: Case, device: str):
    """The adapter's implementation of case.op as a callable f(x, training) -> output,
    with `running_stats()` for stateful ops."""
    p, row = case.params, OPS[case.op]
    # Only an adapter that declares mixed precision gets `param_dtype` (Capabilities.mixed_precision).
    mixed = {"param_dtype": case.param_dtype} if case.mixed else {}
    if row.stateful:
        build = getattr(adapter, f"{case.op}_layer")
        channels = case.shape[case.channel_axis]
        # Copies: the running statistics become the layer's state, which it may update in place (GEN-6).
        state = {name: None if p.get(name) is None else p[name].copy() for name in ("running_mean", "running_var")}
        return build(num_features=channels, dtype=case.dtype, weight=p.get("weight"), bias=p.get("bias"), **state,
                     momentum=adapter_momentum(adapter, case.momentum), eps=case.eps, device=device, **mixed)
    function = getattr(adapter, case.op)
    kwargs = dict(case.attrs, weight=p.get("weight"), eps=case.eps, device=device, **mixed)
    if row.has_bias:
        kwargs["bias"] = p.get("bias")
    return StatelessLayer(function, kwargs)


class StatelessLayer:
    """An op without state called as a layer: every call is the function with fixed arguments."""

    def __init__(self, function, kwargs):
        self.function, self.kwargs = function, kwargs

    def __call__(self, x, *, training: bool):
        return self.function(x, **self.kwargs)
