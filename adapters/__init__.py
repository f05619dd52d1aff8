"""normspec.adapters: the built-in adapters and the loader for third-party ones.

A built-in adapter is one file here plus its expectations file
(expectations/<adapter id>.toml). A third-party adapter is named as
`package.module:attr`, where attr is an Adapter subclass or instance.
"""
from __future__ import annotations

import importlib
import inspect

from normspec.errors import UsageError
from normspec.registry import OPS

from .base import (DTYPES, OP_NAMES, SCALER_NAMES, Adapter, Capabilities, Conventions, FunctionalAdapter,
                   FunctionalLayer, Layer, ReplicatedLayer, Scaler)

BUILTIN = {
    "numpy": "normspec.adapters.numpy_reference:NumpyReferenceAdapter",
    "torch": "normspec.adapters.torch_modules:TorchAdapter",
    "torch-channels-last": "normspec.adapters.torch_modules:TorchChannelsLastAdapter",
    # Mixed-precision items only: float32 modules fed half inputs inside torch.autocast.
    "torch-autocast": "normspec.adapters.torch_autocast:TorchAutocastAdapter",
    # SyncBatchNorm (spec DP): reported "not run" on CPU, where torch rejects it.
    "torch-sync": "normspec.adapters.torch_sync:TorchSyncAdapter",
    "flax-linen": "normspec.adapters.flax_linen:FlaxLinenAdapter",
    "flax-nnx": "normspec.adapters.flax_nnx:FlaxNnxAdapter",
    # Synchronized BatchNorm (spec DP) on 8 CPU devices: its own process (XLA_FLAGS, Adapter.environment).
    "flax-linen-sync": "normspec.adapters.flax_sync:FlaxLinenSyncAdapter",
    "flax-nnx-sync": "normspec.adapters.flax_nnx_sync:FlaxNnxSyncAdapter",
    "keras": "normspec.adapters.keras_layers:KerasAdapter",
    "keras-jax": "normspec.adapters.keras_jax:KerasJaxAdapter",
    "keras-torch": "normspec.adapters.keras_torch:KerasTorchAdapter",
    # Synchronized BatchNorm (spec DP) under MirroredStrategy on 8 logical CPU devices, which the adapter makes
    # at import, before TensorFlow's runtime starts: its own process, apart from keras and tf-nn.
    "keras-sync": "normspec.adapters.keras_sync:KerasSyncAdapter",
    "tf-nn": "normspec.adapters.tf_nn:TfNnAdapter",
    "onnx-reference": "normspec.adapters.onnx_reference:OnnxReferenceAdapter",
    "onnxruntime": "normspec.adapters.onnx_runtime:OnnxRuntimeAdapter",
    "equinox": "normspec.adapters.equinox_nn:EquinoxAdapter",
    "equinox-bn-batch": "normspec.adapters.equinox_nn:EquinoxBatchModeAdapter",
    # Synchronized BatchNorm (spec DP) on 8 CPU devices, as flax-linen-sync.
    "equinox-sync": "normspec.adapters.equinox_sync:EquinoxSyncAdapter",
    "sklearn": "normspec.adapters.sklearn_scalers:SklearnAdapter",
    "keras-normalization": "normspec.adapters.keras_normalization:KerasNormalizationAdapter",
    # Apply only (SCALE-9). PyPI's torchvision does not import beside torch 2.13.0: checked with 2.14.1 + 0.29.1.
    "torchvision": "normspec.adapters.torchvision_normalize:TorchvisionAdapter",
}


LOADED = {}  # adapter id -> the target it was loaded by (reproduction snippets name it)


def load_adapter(target: str) -> Adapter:
    """The adapter named by a built-in ID or by `package.module:attr`; UsageError otherwise."""
    path = BUILTIN.get(target, target)
    if ":" not in path:
        raise UsageError(f"unknown adapter {target!r}: use one of {', '.join(BUILTIN)} or package.module:attr")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        hint = (f"install its framework, e.g. pip install 'normspec[{_extra(target)}]'" if target in BUILTIN
                else "check the module path and that its directory is on PYTHONPATH")
        raise UsageError(f"adapter {target!r} cannot be imported ({error}); {hint}") from None
    except Exception as error:  # the module itself fails: a configuration error, not a non-conformance
        raise UsageError(f"adapter {target!r}: importing {module_name} raised {type(error).__name__}: {error}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise UsageError(f"adapter {target!r}: module {module_name} has no attribute {attr!r}") from None
    try:
        adapter = obj() if isinstance(obj, type) else obj
    except Exception as error:
        raise UsageError(f"adapter {target!r}: {attr}() raised {type(error).__name__}: {error}") from None
    if not isinstance(adapter, Adapter) or not adapter.id:
        raise UsageError(f"adapter {target!r} is not an Adapter with an id (see adapters/base.py)")
    missing = methods_without_param_dtype(adapter)
    if missing:
        raise UsageError(f"adapter {target!r} declares Capabilities.mixed_precision, but {', '.join(missing)} "
                         f"take no `param_dtype` keyword, which every call with parameters of another dtype passes "
                         f"(NUM-2.3); add `param_dtype=None` to them (docs/writing-an-adapter.md, section 5)")
    LOADED[adapter.id] = target
    return adapter


def methods_without_param_dtype(adapter: Adapter) -> list:
    """The methods a mixed-precision call reaches that cannot take `param_dtype`: each op's method (a
    FunctionalAdapter's functional form where it builds the layer), `vjp` for the backward ops, and a
    data-parallel op's replicated layer and VJP."""
    caps = adapter.capabilities
    if not caps.mixed_precision:
        return []
    reached = []
    for op in caps.ops:
        if not any(caps.parameter_dtypes_for(op, dtype) for dtype, _ in caps.mixed_precision):
            continue
        name = f"{op}_layer" if OPS[op].stateful else op
        if OPS[op].stateful and getattr(type(adapter), name) is getattr(FunctionalAdapter, name):
            name = op
        reached.append(name)
        if op in caps.backward_ops:
            reached.append("vjp")
    for op in caps.data_parallel:  # synchronized BatchNorm (DP): the replicated layer and its VJP
        if any(caps.parameter_dtypes_for(op, dtype) for dtype, _ in caps.mixed_precision):
            reached.append(f"{op}_layer")
            if op in caps.data_parallel_backward:
                reached.append(f"{op}_vjp")
    return sorted({name for name in reached if not _takes(getattr(adapter, name), "param_dtype")})


def _takes(method, keyword: str) -> bool:
    parameters = inspect.signature(method).parameters.values()
    return any(p.name == keyword or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _extra(target: str) -> str:
    return {"torch-channels-last": "torch", "torch-autocast": "torch", "torch-sync": "torch", "flax-linen": "jax", "flax-nnx": "jax", "flax-linen-sync": "jax", "flax-nnx-sync": "jax",
            "keras": "tensorflow", "keras-sync": "tensorflow", "tf-nn": "tensorflow", "keras-normalization": "tensorflow",
            "onnx-reference": "onnx", "onnxruntime": "onnx", "equinox-bn-batch": "equinox", "equinox-sync": "equinox"}.get(target, target)


__all__ = ["Adapter", "FunctionalAdapter", "Capabilities", "Conventions", "Layer", "FunctionalLayer", "ReplicatedLayer", "Scaler", "BUILTIN",
           "OP_NAMES", "SCALER_NAMES", "DTYPES", "load_adapter"]
