"""`equinox` and `equinox-bn-batch`: the equinox.nn modules BatchNorm, LayerNorm, GroupNorm and
RMSNorm as Equinox users call them. Checked against equinox 0.13.8, jax 0.10.2.

Conventions (Equinox's own):
- Each module takes one example; the batch is a `jax.vmap` over it. GroupNorm and BatchNorm
  take (C, ...) per example, so a batch is (N, C, ...): channel axis 1. LayerNorm and RMSNorm
  normalize a whole example of exactly `shape`, so every leading axis is one `jax.vmap`.
- BatchNorm is built by `eqx.nn.make_with_state`, called under `jax.vmap(..., axis_name="batch",
  in_axes=(0, None), out_axes=(0, None))` with its `eqx.nn.State`, and switched to evaluation
  by `eqx.nn.inference_mode`. Its `momentum` weights the old value; the running variance is
  the biased one.
- Its `mode` changes what training and evaluation compute: `equinox` builds it without `mode`
  (the default, which warns and is "ema" in 0.13.8), `equinox-bn-batch` with mode="batch"
  (BatchNorm only: the other modules have no mode).
- Every module gets dtype = the input dtype (parameters and BatchNorm state), the
  configuration whose output has the input's dtype; under mixed precision (NUM-2.3) dtype =
  float32 (Equinox's default outside x64 mode) with a float16/bfloat16 input, which LayerNorm,
  GroupNorm and RMSNorm compute in float32 and return in the input's dtype.
- Absent affine parameters: LayerNorm gets use_weight/use_bias; RMSNorm gets use_bias=False
  (Equinox's default is True; the spec's RMSNorm has no bias) and use_weight; GroupNorm and
  BatchNorm have one flag, channelwise_affine, for both, so a lone weight or bias is given
  with the other left at Equinox's initial value (ones or zeros: the identity).
- BatchNorm state: `running_mean=None` is the state `make_with_state` creates. Given
  statistics are set into that state (`State.set`) as a restored checkpoint's would be: in
  "ema" mode with the first-call flag cleared (else the first training call would discard
  them); in "batch" mode with the step counter left at 0. `running_stats()` returns the
  stored running mean and variance.

Every call is a jitted one, compiled once per input shape and layer structure, through the
Flax adapters' executables (_jax_executables: in memory and on disk) and process bounds
(_jax_process); importing _jax_common turns on jax_enable_x64 for float64.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
from normspec.dtypes import MIXED_PRECISION

from . import _jax_executables as executables
from ._jax_common import FlaxAdapter, cache, gpu_status, jax_device, jitted_vjp, put, to_numpy
from .base import Adapter, Capabilities, Conventions, Layer

OPS = ("batch_norm", "layer_norm", "group_norm", "rms_norm")
_AXIS_NAME = "batch"

# A key part of every executable: _jax_executables' disk key covers jax, jaxlib, flax and the
# Flax adapters' sources, not equinox or this file.
_KEY = ("equinox", eqx.__version__, hashlib.sha256(Path(__file__).read_bytes()).hexdigest())


@dataclass(frozen=True)
class Structure:
    """The structure of one module: the key of the jit caches. eps and momentum are not part of
    it: they reach the jitted functions as weakly typed traced scalars (as in the Flax adapters,
    _jax_common.LayerStructure), so a new eps compiles nothing.

    shape: LayerNorm/RMSNorm's `shape`, or (C,) for GroupNorm/BatchNorm.
    mode: BatchNorm's `mode` argument, None to leave it at Equinox's default.
    """

    op: str
    dtype: str
    shape: tuple
    use_weight: bool
    use_bias: bool
    num_groups: int | None = None
    mode: str | None = None
    # The parameters' (and BatchNorm state's) dtype where it is not the input's: mixed precision
    # (NUM-2.3), the module built with dtype=float32 and called on a float16/bfloat16 input.
    param_dtype: str | None = None

    @property
    def parameter_dtype(self):
        """The module's `dtype` argument: the input's, or the mixed-precision parameter dtype."""
        return np.dtype(self.param_dtype or self.dtype)


def _construct(make, *args, **kwargs):
    """make(*args, **kwargs) without two warnings that say nothing here: eps and momentum are
    traced values in Equinox's static fields (on purpose, see Structure), and the default
    BatchNorm mode is the configuration under test."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="A JAX array is being set as static")
        warnings.filterwarnings("ignore", message=r"When `eqx.nn.BatchNorm\(\.\.\., mode=\.\.\.\)` is unspecified")
        return make(*args, **kwargs)


def _with_params(module, params):
    """The module with the given affine parameters in place of its initial ones."""
    for name, value in params.items():
        module = eqx.tree_at(lambda m, name=name: getattr(m, name), module, value)
    return module


def _stateless(structure: Structure, params, x, eps):
    """One call of a LayerNorm, GroupNorm or RMSNorm on a batch, vmapped over its leading axes."""
    dtype = structure.parameter_dtype
    if structure.op == "layer_norm":
        module = _construct(eqx.nn.LayerNorm, structure.shape, eps=eps, use_weight=structure.use_weight,
                            use_bias=structure.use_bias, dtype=dtype)
    elif structure.op == "rms_norm":
        module = _construct(eqx.nn.RMSNorm, structure.shape, eps=eps, use_weight=structure.use_weight,
                            use_bias=False, dtype=dtype)
    else:
        module = _construct(eqx.nn.GroupNorm, structure.num_groups, structure.shape[0], eps=eps,
                            channelwise_affine=structure.use_weight or structure.use_bias, dtype=dtype)
    call = _with_params(module, params)
    leading = 1 if structure.op == "group_norm" else x.ndim - len(structure.shape)
    for _ in range(leading):
        call = jax.vmap(call)
    return call(x)


def _make_batch_norm(structure: Structure, eps, momentum):
    """`make_with_state(BatchNorm)` for `structure`: (module, state)."""
    kwargs = dict(eps=eps, channelwise_affine=structure.use_weight or structure.use_bias, momentum=momentum,
                  dtype=structure.parameter_dtype)
    if structure.mode is not None:
        kwargs["mode"] = structure.mode
    return _construct(eqx.nn.make_with_state(eqx.nn.BatchNorm), structure.shape[0], _AXIS_NAME, **kwargs)


def _state_arrays(module, state) -> dict:
    """What a BatchNorm's State holds, by name: the running mean and variance, and the first-call
    flag ("ema") or the step counter ("batch")."""
    if module.mode == "ema":
        mean, var = state.get(module.ema_state_index)
        return {"mean": mean, "var": var, "first_time": state.get(module.ema_first_time_index)}
    mean, var = state.get(module.batch_state_index)
    return {"mean": mean, "var": var, "counter": state.get(module.batch_counter)}


def _load_state(module, state, arrays: dict):
    if module.mode == "ema":
        state = state.set(module.ema_first_time_index, arrays["first_time"])
        return state.set(module.ema_state_index, (arrays["mean"], arrays["var"]))
    state = state.set(module.batch_counter, arrays["counter"])
    return state.set(module.batch_state_index, (arrays["mean"], arrays["var"]))


def _batch_norm(structure: Structure, params, stats, x, eps, momentum, training):
    """One call of a BatchNorm on a batch: (output, the state's arrays after the call)."""
    module, state = _make_batch_norm(structure, eps, momentum)
    module = eqx.nn.inference_mode(_with_params(module, params), value=not training)
    state = _load_state(module, state, stats)
    output, state = jax.vmap(module, axis_name=_AXIS_NAME, in_axes=(0, None), out_axes=(0, None))(x, state)
    return output, _state_arrays(module, state)


def _call(structure: Structure, params, stats, x, eps, momentum, training):
    """One call of the module for `structure`: (output, BatchNorm state arrays or None)."""
    if structure.op == "batch_norm":
        return _batch_norm(structure, params, stats, x, eps, momentum, training)
    return _stateless(structure, params, x, eps), None


@cache
def _jitted_call(structure: Structure):
    return jax.jit(partial(_call, structure), static_argnames="training")


@cache
def _jitted_fresh_state(structure: Structure):
    """The state `make_with_state` gives a new BatchNorm of `structure` (eps and momentum do not
    enter it)."""

    def fresh():
        module, state = _make_batch_norm(structure, 1e-5, 0.99)
        return _state_arrays(module, state)

    return jax.jit(fresh)


class EquinoxAdapter(Adapter):
    id = "equinox"
    framework = "equinox"
    compiles_per_shape = True
    conventions = Conventions(channel_axis=1, momentum_weights="old_value", running_var_estimator="biased",
                              default_eps={op: 1e-5 for op in OPS})
    # Equinox has no InstanceNorm, and no cumulative average.
    # Mixed precision (NUM-2.3): modules built with dtype=float32 (Equinox's default outside x64 mode)
    # called on float16/bfloat16 inputs.
    capabilities = Capabilities(ops=OPS, devices=("cpu", "cuda"), cumulative_average=False, backward_ops=OPS,
                                mixed_precision=MIXED_PRECISION)
    _mode = None  # BatchNorm's `mode` argument; None: Equinox's default

    statistics = FlaxAdapter.statistics  # the same JIT cache counters (normspec bench)

    def device_status(self) -> dict:
        return {"cpu": None, "cuda": gpu_status()}

    def _run(self, direction, structure, args, training, device):
        jitted = _jitted_call(structure) if direction == "forward" else jitted_vjp(_call, structure)
        return executables.run(jitted, (direction, _KEY, structure, device), args,
                               static={"training": bool(training)}, device=device)

    def _structure(self, op, x_dtype, shape, weight, bias, num_groups=None, param_dtype=None) -> Structure:
        return Structure(op, str(np.dtype(x_dtype)), shape, weight is not None, bias is not None,
                         num_groups=num_groups, mode=self._mode if op == "batch_norm" else None,
                         param_dtype=param_dtype)

    def _forward(self, structure, x, weight, bias, eps, device):
        output, _ = self._run("forward", structure, (_params(weight, bias, device), None, put(x, device), float(eps),
                                                     None), False, device)
        return to_numpy(output)

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device, param_dtype=None):
        structure = self._structure("layer_norm", x.dtype, _shape(normalized_shape), weight, bias,
                                    param_dtype=param_dtype)
        return self._forward(structure, x, weight, bias, eps, device)

    def rms_norm(self, x, *, normalized_shape, weight, eps, device, param_dtype=None):
        structure = self._structure("rms_norm", x.dtype, _shape(normalized_shape), weight, None,
                                    param_dtype=param_dtype)
        return self._forward(structure, x, weight, None, eps, device)

    def group_norm(self, x, *, num_groups, weight, bias, eps, device, param_dtype=None):
        structure = self._structure("group_norm", x.dtype, (x.shape[1],), weight, bias, num_groups=num_groups,
                                    param_dtype=param_dtype)
        return self._forward(structure, x, weight, bias, eps, device)

    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device, param_dtype=None):
        if momentum is None:
            raise NotImplementedError("Equinox BatchNorm has no cumulative average (BN-4.2)")
        structure = self._structure("batch_norm", dtype, (int(num_features),), weight, bias, param_dtype=param_dtype)
        return _BatchNormLayer(self, structure, float(eps), float(momentum), weight, bias,
                               self._state(structure, running_mean, running_var, device), device)

    def _state(self, structure, running_mean, running_var, device) -> dict:
        """The BatchNorm state arrays on `device`: a fresh layer's, or the given statistics set into it."""
        state = executables.run(_jitted_fresh_state(structure), ("init", _KEY, structure), (), static={}, device=None)
        if running_mean is not None and running_var is not None:
            state = dict(state, mean=running_mean, var=running_var)
            if "first_time" in state:
                state["first_time"] = np.array(False)
        return {name: _place(value, device) for name, value in state.items()}

    def vjp(self, op, x, dy, *, weight, bias, running_mean, running_var, training, eps, device, param_dtype=None,
            **attrs):
        """jax.vjp of the forward's call w.r.t. x and the parameters given (GRAD-1). BatchNorm runs on
        the state the forward would (a fresh layer's when no statistics are given), which is closed
        over: its update is discarded and it is never differentiated."""
        bias = None if op == "rms_norm" else bias
        if op in ("layer_norm", "rms_norm"):
            structure = self._structure(op, x.dtype, _shape(attrs["normalized_shape"]), weight, bias,
                                        param_dtype=param_dtype)
        else:
            groups = attrs["num_groups"] if op == "group_norm" else None
            structure = self._structure(op, x.dtype, (x.shape[1],), weight, bias, num_groups=groups,
                                        param_dtype=param_dtype)
        stats = self._state(structure, running_mean, running_var, device) if op == "batch_norm" else None
        dx, dparams = self._run("vjp", structure, (_params(weight, bias, device), stats, put(x, device),
                                                   put(dy, device), float(eps), _VJP_MOMENTUM), training, device)
        return {"x": to_numpy(dx), "weight": to_numpy(dparams.get("weight")), "bias": to_numpy(dparams.get("bias"))}


class EquinoxBatchModeAdapter(EquinoxAdapter):
    """BatchNorm with mode="batch": batch statistics in training, zero-debiased running statistics
    in evaluation (the other ops are the `equinox` adapter's, so they are checked there)."""

    id = "equinox-bn-batch"
    capabilities = Capabilities(ops=("batch_norm",), devices=("cpu", "cuda"), cumulative_average=False,
                                backward_ops=("batch_norm",), mixed_precision=MIXED_PRECISION)
    _mode = "batch"


class _BatchNormLayer(Layer):
    """An Equinox BatchNorm: its parameters and its State's arrays live here between calls."""

    def __init__(self, adapter, structure, eps, momentum, weight, bias, state, device):
        self._adapter, self._structure, self._device = adapter, structure, device
        self._eps, self._momentum = eps, momentum
        self._params = _params(weight, bias, device)
        self._state = state

    def __call__(self, x, *, training: bool):
        output, self._state = self._adapter._run("forward", self._structure, (
            self._params, self._state, put(x, self._device), self._eps, self._momentum), training, self._device)
        return to_numpy(output)

    def running_stats(self):
        return to_numpy(self._state["mean"]), to_numpy(self._state["var"])


# The momentum a backward call builds BatchNorm with, which the interface does not pass: Equinox's
# default (an "ema" training output with loaded statistics, and so its gradient, depends on it).
_VJP_MOMENTUM = 0.99


def _place(value, device):
    """A state array on `device`: given NumPy arrays as `put` places them; the fresh state's JAX arrays
    kept as they are where they already lie (a round trip through NumPy would lose the step counter's
    weak type, which State.set then rejects)."""
    if not isinstance(value, jax.Array):
        return put(value, device)
    target = jax_device(device)
    return value if value.devices() == {target} else jax.device_put(value, target)


def _params(weight, bias, device) -> dict:
    """Equinox's names for the affine parameters given (an absent one keeps the module's own)."""
    params = {"weight": put(weight, device), "bias": put(bias, device)}
    return {name: value for name, value in params.items() if value is not None}


def _shape(normalized_shape) -> tuple:
    """normalized_shape as Equinox's `shape` tuple, its values unchanged (an invalid one is Equinox's to reject)."""
    return (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
