"""`torch` and `torch-channels-last`: the torch.nn normalization modules, as users build them.

`torch` covers BatchNorm1d/2d/3d, LayerNorm, GroupNorm, InstanceNorm1d/2d/3d and RMSNorm
in their default configuration (no numerics option switched off), on "cpu" and "cuda",
in float16, bfloat16, float32 and float64. `torch-channels-last` runs the same modules
with 4-D and 5-D inputs (and the module) in torch.channels_last / channels_last_3d
memory format; the logical layout stays (N, C, ...). Mixed precision (NUM-2.3) is float32
modules fed float16/bfloat16 inputs, outside any autocast region; `torch-autocast`
(adapters/torch_autocast.py) runs the same calls inside `torch.autocast`.

Checked against torch 2.13.0 (CPU build) and torch 2.11.0+cu130 (CUDA, on an H200).
"""
from __future__ import annotations

import functools
import inspect

import ml_dtypes
import numpy as np
import torch

from normspec.dtypes import MIXED_PRECISION, numpy_dtype

from .base import OP_NAMES, Adapter, Capabilities, Conventions, Layer

_TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16,
                 "float32": torch.float32, "float64": torch.float64}


def _to_torch(array, device):
    array = np.asarray(array)
    if array.dtype == ml_dtypes.bfloat16:  # torch.from_numpy has no bfloat16; float32 holds it exactly
        return torch.from_numpy(array.astype(np.float32)).to(device=device, dtype=torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _to_numpy(tensor):
    """What torch returned, in the dtype it returned (a wrong dtype is the suite's to flag)."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy().astype(ml_dtypes.bfloat16)
    return tensor.numpy()


def _affine_flags(weight, bias):
    """(affine, bias) constructor flags. torch has bias=False but no weight-less affine
    layer: with a bias alone the weight is kept at its initial ones, which is the same map."""
    return weight is not None or bias is not None, bias is not None


@functools.lru_cache(maxsize=None)
def _takes_bias(cls) -> bool:
    return "bias" in inspect.signature(cls.__init__).parameters


def _constructor_kwargs(cls, kwargs):
    """kwargs less `bias` where cls has no such argument (BatchNorm, GroupNorm and
    InstanceNorm gained it after torch 2.11). Its default is a bias initialised to zeros
    and left so (no value is copied into it), which is the same map as no bias."""
    if "bias" in kwargs and not _takes_bias(cls):
        return {name: value for name, value in kwargs.items() if name != "bias"}
    return kwargs


def _by_rank(classes, ndim):
    """The 1d/2d/3d class for an input rank (2 and 3 -> 1d); other ranks go to the
    nearest class so that torch's own rank check rejects them."""
    return classes[min(max(ndim, 3), 5) - 3]


class TorchAdapter(Adapter):
    """torch.nn modules with contiguous (N, C, ...) inputs; see the module docstring."""

    id = "torch"
    framework = "torch"
    conventions = Conventions(
        channel_axis=1, momentum_weights="new_batch", running_var_estimator="unbiased",
        # RMSNorm's default eps=None means finfo of the compute dtype (float32 for half
        # inputs, float64 for float64), so there is no single number to give.
        default_eps={"batch_norm": 1e-5, "layer_norm": 1e-5, "group_norm": 1e-5,
                     "instance_norm": 1e-5, "rms_norm": None})
    # Every op runs in every dtype on CPU in torch 2.13 (none raises "not implemented"), and float32
    # modules take float16 and bfloat16 inputs (mixed precision, NUM-2.3).
    capabilities = Capabilities(devices=("cpu", "cuda"), cumulative_average=True,
                                instance_norm_running_stats=True, backward_ops=OP_NAMES,
                                mixed_precision=MIXED_PRECISION)

    def device_status(self):
        return {"cpu": None, "cuda": None if torch.cuda.is_available()
                else "cuda: not available (torch.cuda.is_available() is False)"}

    def _layout(self, module, x):
        """The module and input as given to forward; subclasses change the memory format."""
        return module, x

    def _format(self, tensor):
        """A tensor (x or dy) in the memory format this adapter tests; subclasses change it."""
        return tensor

    def _call(self, module, tensor, device):
        """module(tensor); a subclass runs it in its context (torch.autocast)."""
        return module(tensor)

    def _forward(self, module, x, device):
        module, tensor = self._layout(module, _to_torch(x, device))
        with torch.no_grad():
            return _to_numpy(self._call(module, tensor, device))

    def _build(self, cls, args, kwargs, params, dtype, device):
        """cls(*args, **kwargs) moved to the test's dtype and device, loaded with `params`
        (name -> array or None; None keeps the module's own initial value)."""
        module = cls(*args, **_constructor_kwargs(cls, kwargs))
        module = module.to(device=device, dtype=_TORCH_DTYPES[np.dtype(dtype).name])
        with torch.no_grad():
            for name, value in params.items():
                if value is not None:
                    getattr(module, name).copy_(_to_torch(value, device))
        return module

    def _module_for(self, op, x, *, weight, bias, eps, device, running_mean=None, running_var=None,
                    param_dtype=None, **attrs):
        """The module of a stateless op for input x, or of a BatchNorm/InstanceNorm of x's rank
        (InstanceNorm tracks running statistics when they are given), in x's dtype or `param_dtype`."""
        affine, has_bias = _affine_flags(weight, bias)
        dtype = x.dtype if param_dtype is None else numpy_dtype(param_dtype)
        params = dict(weight=weight, bias=bias)
        if op == "layer_norm":
            return self._build(torch.nn.LayerNorm, (attrs["normalized_shape"],),
                               dict(eps=eps, elementwise_affine=affine, bias=has_bias), params, dtype, device)
        if op == "group_norm":
            return self._build(torch.nn.GroupNorm, (attrs["num_groups"], x.shape[1]),
                               dict(eps=eps, affine=affine, bias=has_bias), params, dtype, device)
        if op == "rms_norm":
            return self._build(torch.nn.RMSNorm, (attrs["normalized_shape"],),
                               dict(eps=eps, elementwise_affine=weight is not None), dict(weight=weight), dtype,
                               device)
        classes, kwargs = self._stateful(op, x.shape[1], weight, bias, running_mean, eps, momentum=0.1)
        params.update(running_mean=running_mean, running_var=running_var)
        return self._build(_by_rank(classes, np.ndim(x)), (), kwargs, params, dtype, device)

    @staticmethod
    def _stateful(op, num_features, weight, bias, running_mean, eps, momentum):
        """The 1d/2d/3d classes and constructor arguments of a BatchNorm/InstanceNorm."""
        affine, has_bias = _affine_flags(weight, bias)
        kwargs = dict(num_features=num_features, eps=eps, momentum=momentum, affine=affine, bias=has_bias)
        if op == "batch_norm":
            return (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d), kwargs
        kwargs["track_running_stats"] = running_mean is not None
        return (torch.nn.InstanceNorm1d, torch.nn.InstanceNorm2d, torch.nn.InstanceNorm3d), kwargs

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device, param_dtype=None):
        return self._forward(self._module_for("layer_norm", x, weight=weight, bias=bias, eps=eps, device=device,
                                              normalized_shape=normalized_shape, param_dtype=param_dtype), x, device)

    def group_norm(self, x, *, num_groups, weight, bias, eps, device, param_dtype=None):
        return self._forward(self._module_for("group_norm", x, weight=weight, bias=bias, eps=eps, device=device,
                                              num_groups=num_groups, param_dtype=param_dtype), x, device)

    def rms_norm(self, x, *, normalized_shape, weight, eps, device, param_dtype=None):
        return self._forward(self._module_for("rms_norm", x, weight=weight, bias=None, eps=eps, device=device,
                                              normalized_shape=normalized_shape, param_dtype=param_dtype), x, device)

    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device, param_dtype=None):
        # running_mean/var None keeps the fresh buffers (zeros, ones); momentum None is
        # torch's cumulative average. The module's dtype is its parameters' (NUM-2.3).
        return self._layer("batch_norm", num_features, param_dtype or dtype, weight, bias, running_mean, running_var,
                           momentum, eps, device)

    def instance_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                            momentum, eps, device, param_dtype=None):
        return self._layer("instance_norm", num_features, param_dtype or dtype, weight, bias, running_mean,
                           running_var, momentum, eps, device)

    def _layer(self, op, num_features, dtype, weight, bias, running_mean, running_var, momentum, eps, device):
        classes, kwargs = self._stateful(op, num_features, weight, bias, running_mean, eps, momentum)
        return _TorchLayer(self, classes, kwargs,
                           dict(weight=weight, bias=bias, running_mean=running_mean, running_var=running_var),
                           dtype, device)

    def vjp(self, op, x, dy, *, weight, bias, running_mean, running_var, training, eps, device, **attrs):
        """torch.autograd through the module's forward; dy in the input's memory format."""
        module = self._module_for(op, x, weight=weight, bias=bias, eps=eps, device=device,
                                  running_mean=running_mean, running_var=running_var, **attrs)
        module.train(training)
        leaf = _to_torch(x, device).requires_grad_()
        module, tensor = self._layout(module, leaf)
        # The parameters present in the call: torch keeps an all-ones weight when only a bias is asked for.
        wanted = {"x": leaf, "weight": module.weight if weight is not None else None,
                  "bias": module.bias if bias is not None else None}
        inputs = {name: value for name, value in wanted.items() if value is not None}
        output = self._call(module, tensor, device)
        # dy in the output's dtype, as the next op's backward hands it on where that is not x's (autocast).
        grads = torch.autograd.grad(output, tuple(inputs.values()),
                                    self._format(_to_torch(dy, device)).to(output.dtype))
        found = dict(zip(inputs, grads))
        return {name: _to_numpy(found[name]) if name in found else None for name in wanted}


class _TorchLayer(Layer):
    """A BatchNorm/InstanceNorm module whose 1d/2d/3d class follows the input rank.

    The layer is built before any input is seen, as the 1d class; an input of another
    rank moves the state (parameters, running statistics, num_batches_tracked) into a
    module of the matching class, so that torch's own rank checks apply.
    """

    def __init__(self, adapter, classes, kwargs, params, dtype, device):
        self._adapter, self._classes, self._kwargs = adapter, classes, kwargs
        self._dtype, self._device = dtype, device
        self._module = adapter._build(classes[0], (), kwargs, params, dtype, device)

    def __call__(self, x, *, training: bool):
        cls = _by_rank(self._classes, np.ndim(x))
        if type(self._module) is not cls:
            state = self._module.state_dict()
            self._module = self._adapter._build(cls, (), self._kwargs, {}, self._dtype, self._device)
            self._module.load_state_dict(state)
        self._module.train(training)
        return self._adapter._forward(self._module, x, self._device)

    def running_stats(self):
        if self._module.running_mean is None:
            return None, None
        return _to_numpy(self._module.running_mean), _to_numpy(self._module.running_var)


class TorchChannelsLastAdapter(TorchAdapter):
    """The `torch` modules given 4-D/5-D inputs in channels_last / channels_last_3d memory
    format (module too). Rank 2 and 3 tensors have no such format and run as in `torch`,
    so that every op stays covered with the same cases."""

    id = "torch-channels-last"

    def _layout(self, module, x):
        if x.dim() not in _CHANNELS_LAST:
            return module, x
        # module.to(memory_format=...) refuses a 4-D parameter under channels_last_3d
        # (LayerNorm over the 4 trailing axes of a 5-D input), so each 4-D/5-D parameter
        # gets the channels-last format of its own rank; lower-rank ones have none.
        for parameter in module.parameters():
            if parameter.dim() in _CHANNELS_LAST:
                parameter.data = parameter.data.contiguous(memory_format=_CHANNELS_LAST[parameter.dim()])
        return module, self._format(x)

    def _format(self, tensor):
        if tensor.dim() not in _CHANNELS_LAST:
            return tensor
        return tensor.contiguous(memory_format=_CHANNELS_LAST[tensor.dim()])


_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}
