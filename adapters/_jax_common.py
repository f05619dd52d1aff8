"""What the Flax adapters (`flax-linen`, `flax-nnx`) share: the JAX setup, the
description of one layer configuration (`LayerStructure`), array placement and the
adapter methods, written once against two hooks each Flax API implements.

Importing this module turns on `jax_enable_x64` for the whole process: without it
JAX silently computes float64 inputs in float32, so the float64 cases would test a
configuration no float64 user has. It changes no other dtype the adapters use:
every module gets explicit dtype/param_dtype, and Flax creates its batch
statistics as explicit float32. It does affect any other JAX code in the process.

Every call is a jitted one, compiled once per input shape and layer structure: the
suite draws shapes from a fixed pool per op (normspec.shape_pool), so most calls find
their executable compiled (in memory or on disk: _jax_executables), and the process
stays within its resources (_jax_process).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from normspec.dtypes import MIXED_PRECISION  # noqa: E402

from . import _jax_executables as executables  # noqa: E402
from ._jax_process import JIT_COUNTS, cache  # noqa: E402
from .base import OP_NAMES, Adapter, Capabilities, Conventions, Layer, python_int  # noqa: E402

executables.activate()


@dataclass(frozen=True)
class LayerStructure:
    """The structure of one layer: the key of the jit caches.

    features: normalized_shape (LayerNorm, RMSNorm) or (C,) for the channel ops.
    eps and momentum are not part of it: they reach the jitted functions as Python
    floats, which JAX traces as weakly typed scalars, so they take the dtype of the
    array they meet as Flax's Python-float attributes do, and a new eps costs no new
    compilation (the suite draws one per example). The one difference from a baked-in
    constant: XLA converts the traced float64 at run time, which can double-round (via
    float32) where eps is added in float16/bfloat16 (nnx evaluation-mode BatchNorm),
    for eps within 2^-24 (relative) of a float16 rounding tie.
    """

    op: str
    dtype: str
    features: tuple
    use_scale: bool
    use_bias: bool
    num_groups: int | None = None
    # The parameters' (and BatchNorm statistics') dtype where it is not the input's: mixed
    # precision (NUM-2.3), the module built with dtype=<input dtype>, param_dtype=float32.
    param_dtype: str | None = None

    @property
    def parameter_dtype(self) -> str:
        """The module's param_dtype: the input dtype, or the mixed-precision parameter dtype."""
        return self.param_dtype or self.dtype

    @property
    def axes(self) -> tuple:
        """The trailing axes LayerNorm/RMSNorm reduce over and keep scale/bias for."""
        return tuple(range(-len(self.features), 0))


def jax_device(device: str):
    return jax.devices("gpu" if device == "cuda" else device)[0]


def put(array, device: str):
    """A NumPy array (bfloat16 as ml_dtypes) as an argument of a jitted call on `device`; None
    stays None.

    For JAX's default device the NumPy array itself: jit's C++ dispatch transfers it faster
    than a jax.device_put would (docs/benchmarks.md), and the computation is the same. Another device gets jax.device_put of the NumPy array (jnp.asarray
    first would make a JAX array on the default device, and moving that one runs a copy
    executable that XLA compiles once per shape and dtype). The array is copied first because
    JAX may alias its buffer on CPU, and the suite's arrays are the caller's."""
    if array is None:
        return None
    target = jax_device(device)
    return np.array(array) if target == _DEFAULT_DEVICE else jax.device_put(np.array(array), target)


_DEFAULT_DEVICE = jax.devices()[0]


def to_numpy(array):
    return None if array is None else np.asarray(array)


def gpu_status():
    try:
        jax.devices("gpu")
        return None
    except RuntimeError:
        return "cuda: not available (jax.devices('gpu') found none)"


class FlaxAdapter(Adapter):
    """The adapter methods of both Flax APIs. A subclass sets

    `_call(structure, params, stats, x, eps, momentum, training)` -> (output, new stats
        or None), a staticmethod: one un-jitted call of the Flax module for `structure`;
        params holds "scale"/"bias" (those in use), stats holds "mean"/"var" for
        BatchNorm (None otherwise). The forward jits it per LayerStructure (`jitted_call`),
        the backward differentiates it with `jax.vjp` (`jitted_vjp`);
    `_init_stats(structure)` -> the jitted construction of a BatchNorm for `structure`, a staticmethod:
        (eps, momentum) -> its fresh "mean"/"var".
    """

    framework = "flax"
    compiles_per_shape = True
    conventions = Conventions(
        channel_axis=-1, momentum_weights="old_value", running_var_estimator="biased",
        default_eps={"batch_norm": 1e-5, "layer_norm": 1e-6, "group_norm": 1e-6,
                     "instance_norm": 1e-6, "rms_norm": 1e-6})
    # Mixed precision (NUM-2.3): the modules' dtype=<float16/bfloat16 input>, param_dtype=float32.
    capabilities = Capabilities(devices=("cpu", "cuda"), cumulative_average=False,
                                instance_norm_running_stats=False,
                                backward_ops=OP_NAMES, mixed_precision=MIXED_PRECISION)

    def device_status(self) -> dict:
        return {"cpu": None, "cuda": gpu_status()}

    def statistics(self) -> dict:
        """JIT cache use in this process (`normspec bench`): jitted calls that found their
        executable compiled, in memory or on disk (hits), those that compiled one (misses), and
        of the hits those loaded from disk (_jax_executables, or JAX's persistent cache where
        that is on)."""
        jax_cache_loads = executables.COUNTS["jax_cache_loads"]
        compiles = JIT_COUNTS["backend_compiles"] - jax_cache_loads
        return {"jit_cache_hits": JIT_COUNTS["calls"] - compiles, "jit_cache_misses": compiles,
                "jit_persistent_loads": jax_cache_loads + executables.COUNTS["disk_loads"]}

    _call = None  # set by each API: staticmethod(call)

    def _apply(self, structure, eps, momentum, params, stats, x, training, device):
        call = type(self)._call
        return executables.run(jitted_call(call, structure), ("forward", _name(call), structure, device),
                               (params, stats, x, eps, momentum), static={"training": training}, device=device)

    _init_stats = None  # set by each API: staticmethod(structure -> jitted (eps, momentum) -> fresh "mean"/"var")

    def _fresh_stats(self, structure, eps, momentum):
        return self._run_init(type(self)._init_stats(structure), structure, eps, momentum)

    def _run_init(self, init, structure, eps, momentum):
        """`init(eps, momentum)`, an API's jitted construction of a BatchNorm for `structure`: its fresh
        "mean"/"var", on JAX's default device."""
        return executables.run(init, ("init", _name(type(self)._call), structure), (eps, momentum), static={},
                               device=None)

    def _stateless(self, structure, eps, x, weight, bias, device):
        output, _ = self._apply(structure, float(eps), None, _params(weight, bias, device), None, put(x, device), False,
                                device)
        return to_numpy(output)

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device, param_dtype=None):
        structure = LayerStructure("layer_norm", str(x.dtype), _shape(normalized_shape), weight is not None, bias is not None,
                                   param_dtype=param_dtype)
        return self._stateless(structure, eps, x, weight, bias, device)

    def rms_norm(self, x, *, normalized_shape, weight, eps, device, param_dtype=None):
        structure = LayerStructure("rms_norm", str(x.dtype), _shape(normalized_shape), weight is not None, False,
                                   param_dtype=param_dtype)
        return self._stateless(structure, eps, x, weight, None, device)

    def group_norm(self, x, *, num_groups, weight, bias, eps, device, param_dtype=None):
        structure = LayerStructure("group_norm", str(x.dtype), (x.shape[-1],), weight is not None, bias is not None,
                    num_groups=python_int(num_groups), param_dtype=param_dtype)
        return self._stateless(structure, eps, x, weight, bias, device)

    def instance_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                            momentum, eps, device, param_dtype=None):
        if running_mean is not None or running_var is not None:
            raise NotImplementedError("Flax InstanceNorm keeps no running statistics (IN-3)")
        structure = LayerStructure("instance_norm", str(np.dtype(dtype)), (num_features,), weight is not None, bias is not None,
                                   param_dtype=param_dtype)
        return _StatelessLayer(self, structure, eps, weight, bias, device)

    def vjp(self, op, x, dy, *, weight, bias, running_mean, running_var, training, eps, device, param_dtype=None,
            **attrs):
        """jax.vjp of the forward's module call w.r.t. x and the params in use (GRAD-1). BatchNorm:
        training normalizes with the batch statistics (the stats update is discarded), evaluation
        with the given running statistics (a fresh layer's own when None); they are never
        differentiated. Flax InstanceNorm always uses the instance statistics."""
        if op == "instance_norm" and (running_mean is not None or running_var is not None):
            raise NotImplementedError("Flax InstanceNorm keeps no running statistics (IN-3)")
        features = _shape(attrs["normalized_shape"]) if op in ("layer_norm", "rms_norm") else (x.shape[-1],)
        groups = python_int(attrs["num_groups"]) if op == "group_norm" else None
        structure = LayerStructure(op, str(x.dtype), features, weight is not None, bias is not None and op != "rms_norm",
                    num_groups=groups, param_dtype=param_dtype)
        eps, stats = float(eps), None
        if op == "batch_norm":
            if running_mean is None or running_var is None:
                stats = self._fresh_stats(structure, eps, _VJP_MOMENTUM)
            else:
                stats = {"mean": put(running_mean, device), "var": put(running_var, device)}
        params = _params(weight, bias if op != "rms_norm" else None, device)
        call = type(self)._call
        dx, dparams = executables.run(jitted_vjp(call, structure), ("vjp", _name(call), structure, device),
                                      (params, stats, put(x, device), put(dy, device), eps, _VJP_MOMENTUM),
                                      static={"training": bool(training)}, device=device)
        return {"x": to_numpy(dx), "weight": to_numpy(dparams.get("scale")), "bias": to_numpy(dparams.get("bias"))}

    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device, param_dtype=None):
        if momentum is None:
            raise NotImplementedError("Flax BatchNorm has no cumulative average (BN-4.2)")
        structure = LayerStructure("batch_norm", str(np.dtype(dtype)), (num_features,), weight is not None, bias is not None,
                                   param_dtype=param_dtype)
        eps, momentum = float(eps), float(momentum)
        if running_mean is None or running_var is None:
            stats = self._fresh_stats(structure, eps, momentum)
        else:
            stats = {"mean": running_mean, "var": running_var}
        return _BatchNormLayer(self, structure, eps, momentum, weight, bias, stats, device)


class _StatelessLayer(Layer):
    """InstanceNorm without running statistics: every call uses the input statistics."""

    def __init__(self, adapter, structure, eps, weight, bias, device):
        self._adapter, self._spec, self._eps, self._device = adapter, structure, eps, device
        self._weight, self._bias = weight, bias

    def __call__(self, x, *, training: bool):
        return self._adapter._stateless(self._spec, self._eps, x, self._weight, self._bias, self._device)

    def running_stats(self):
        return None, None


class _BatchNormLayer(Layer):
    """A Flax BatchNorm: the parameters and the batch statistics live here between calls."""

    def __init__(self, adapter, structure, eps, momentum, weight, bias, stats, device):
        self._adapter, self._spec, self._device = adapter, structure, device
        self._eps, self._momentum = eps, momentum
        self._params = _params(weight, bias, device)
        self._stats = {k: put(v, device) for k, v in stats.items()}

    def __call__(self, x, *, training: bool):
        output, self._stats = self._adapter._apply(self._spec, self._eps, self._momentum, self._params,
                                                   self._stats, put(x, self._device), bool(training), self._device)
        return to_numpy(output)

    def running_stats(self):
        return to_numpy(self._stats["mean"]), to_numpy(self._stats["var"])


def _params(weight, bias, device) -> dict:
    """Flax's names for the affine parameters in use (None: the module is built without it)."""
    params = {"scale": put(weight, device), "bias": put(bias, device)}
    return {k: v for k, v in params.items() if v is not None}


def _name(call) -> str:
    """The API's call function by name: a key part that is the same in every process."""
    return f"{call.__module__}.{call.__qualname__}"


def _shape(normalized_shape) -> tuple:
    if isinstance(normalized_shape, (int, np.integer)):
        return (int(normalized_shape),)
    return tuple(int(d) for d in normalized_shape)


# The momentum a backward call builds BatchNorm with: it only weights the running-statistics
# update, which the backward discards (GRAD-1), so any valid value gives the same gradients.
_VJP_MOMENTUM = 0.99


@cache
def jitted_call(call, structure: LayerStructure):
    """The forward, jitted once per (API, LayerStructure): (params, stats, x, eps, momentum, training) ->
    (output, new stats or None)."""

    def step(params, stats, x, eps, momentum, training):
        return call(structure, params, stats, x, eps, momentum, training)

    return jax.jit(step, static_argnames="training")


@cache
def jitted_vjp(call, structure: LayerStructure):
    """The backward, jitted once per (API, LayerStructure): (params, stats, x, dy, eps, momentum, training)
    -> (dx, dparams), the VJP by jax.vjp of the forward's output alone (the stats are closed over:
    constants of the call, never differentiated)."""

    def step(params, stats, x, dy, eps, momentum, training):
        def output(params, x):
            return call(structure, params, stats, x, eps, momentum, training)[0]

        _, pullback = jax.vjp(output, params, x)
        dparams, dx = pullback(dy)
        return dx, dparams

    return jax.jit(step, static_argnames="training")
