"""The adapter interface: how normspec talks to an implementation under test.

An adapter is a subclass of `Adapter` that declares its conventions and what it
covers, and implements the ops it covers as NumPy-in, NumPy-out methods. All
translation between normspec's canonical form and the framework's happens in
one place, `normspec.conventions`, from these declarations; the tests never name a
framework.

Arrays arrive as NumPy arrays of the dtype under test (bfloat16 as
ml_dtypes.bfloat16) and in the adapter's layout (`Conventions.channel_axis`).
Affine parameters and running statistics come in the same dtype as x, or None:
a None weight/bias means "no affine parameter" (configure the layer without it);
a None running statistic in BatchNorm training means "the fresh layer's own
initial state". Return NumPy arrays; the suite checks their shape and dtype.

Mixed precision (NUM-2.3) is optional: an adapter that lists (input dtype, parameter dtype)
pairs in `Capabilities.mixed_precision`, such as ("bfloat16", "float32"), also gets calls whose
weight, bias and running statistics have the parameter dtype, with the keyword argument
`param_dtype` (its name) telling it so, since a layer without affine parameters and with a fresh
state has no array to show it. Running statistics are returned in that dtype, the output in x's.

The fitted scalers (spec/scalers.md) are optional: an adapter that covers one lists it in
`Capabilities.scalers` and returns a `Scaler` from the method of that name. So is synchronized
BatchNorm (spec/ops/sync_batch_norm.md): an adapter lists "sync_batch_norm" in
`Capabilities.data_parallel` and returns a `ReplicatedLayer` from `sync_batch_norm_layer`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from numbers import Integral

import numpy as np

from normspec.dtypes import DTYPES, MIXED_PRECISION, numpy_dtype
from normspec.registry import OP_NAMES, SCALER_NAMES


@dataclass(frozen=True)
class Conventions:
    """How the implementation spells the spec's quantities (translated in normspec.conventions).

    channel_axis: where BatchNorm/GroupNorm/InstanceNorm inputs keep channels (1 or -1).
    momentum_weights: "new_batch" (running <- (1-a)*running + a*batch, PyTorch) or
        "old_value" (running <- m*running + (1-m)*batch, Keras/Flax); spec BN-4.1.
    running_var_estimator: "unbiased" or "biased", the profile parameter of BN-4.4.
    default_eps: the framework's default eps per op, informative (spec/defaults.md).
    scaler_ddof: the variance estimator of standardization, 0 (population) or 1 (sample): STD-2.2.
    scaler_nan: "ignore" (NaN skipped by the fit) or "propagate": the NaN convention of SCALE-5.
    """

    channel_axis: int = 1
    momentum_weights: str = "new_batch"
    running_var_estimator: str = "unbiased"
    default_eps: dict = field(default_factory=dict)
    scaler_ddof: int = 0
    scaler_nan: str = "ignore"


@dataclass(frozen=True)
class Capabilities:
    """What the adapter covers; everything else is reported as not applicable.

    dtypes_by_op narrows `dtypes` for single ops, e.g. {"rms_norm": ("float32",)}.
    """

    ops: tuple = OP_NAMES
    dtypes: tuple = DTYPES
    dtypes_by_op: dict = field(default_factory=dict)
    devices: tuple = ("cpu",)
    batch_norm_training: bool = True
    cumulative_average: bool = False  # BN-4.2 through momentum=None
    instance_norm_running_stats: bool = False  # IN-3
    backward_ops: tuple = ()  # the ops whose `vjp` is implemented (spec/gradients.md)
    scalers: tuple = ()  # the fitted scalers it covers (normspec.registry.SCALERS): none unless declared
    # The values of the scalers' options it supports where it lacks some, e.g. {"with_std": (True,)} for a
    # standardization that always divides: the suite draws the others from the spec's values.
    scaler_options: dict = field(default_factory=dict)
    # The scalers it applies with given statistics (SCALE-9: `standard_scaler_given`), fitted or not.
    given_statistics: tuple = ()
    # The data-parallel ops it covers (normspec.registry.DATA_PARALLEL): none unless declared.
    data_parallel: tuple = ()
    max_replicas: int = 8  # the most replicas its engine's process has devices for
    # The shard sizes it can express (DP-5): "uneven" (shards of different sizes, one sample
    # included) and "empty" (a shard of no sample); equal shards always.
    shard_sizes: tuple = ("uneven", "empty")
    # The data-parallel ops whose per-shard VJP (`sync_batch_norm_vjp`, DP-7) is implemented.
    data_parallel_backward: tuple = ()
    # The (input dtype, parameter dtype) pairs it runs beside the same-dtype ones (NUM-2.3), e.g.
    # (("float16", "float32"), ("bfloat16", "float32")): its calls then get `param_dtype`.
    mixed_precision: tuple = ()
    # False for an adapter that runs only those pairs: a context that exists only under mixed precision, such
    # as torch.autocast's region (float32 modules fed half inputs); its same-dtype calls are not run.
    same_dtype: bool = True

    def __post_init__(self):
        for pair in self.mixed_precision:
            if pair not in MIXED_PRECISION:
                raise ValueError(f"Capabilities.mixed_precision holds {pair!r}: each entry must be one of the "
                                 f"(input dtype, parameter dtype) pairs NUM-2.3 defines, {MIXED_PRECISION}")
        if not self.same_dtype and not self.mixed_precision:
            raise ValueError("Capabilities.same_dtype is False but mixed_precision is empty, so the adapter would run "
                             "nothing: list the (input dtype, parameter dtype) pairs it runs (NUM-2.3), or keep "
                             "same_dtype=True")

    def dtypes_for(self, op: str) -> tuple:
        return tuple(self.dtypes_by_op.get(op, self.dtypes))

    def parameter_dtypes_for(self, op: str, dtype: str) -> tuple:
        """The parameter dtypes other than `dtype` that `op` runs with for inputs of `dtype` (NUM-2.3)."""
        return tuple(p for d, p in self.mixed_precision if d == dtype and d in self.dtypes_for(op))


class Adapter:
    """Base class of every adapter. Subclasses set the class attributes below."""

    id: str = ""
    framework: str = ""  # distribution name whose version the report records
    conventions: Conventions = Conventions()
    capabilities: Capabilities = Capabilities()
    # True for a framework that compiles once per input shape and layer structure (JAX): the
    # suite then runs each op and dtype's tests together, which share those executables.
    compiles_per_shape: bool = False
    # Environment variables the adapter's process must start with, for a framework that reads
    # them once, at import (Keras' KERAS_BACKEND): `normspec check` sets them for its pytest
    # process and workers. Read only.
    environment: dict = {}

    def framework_version(self) -> str:
        try:
            return f"{self.framework} {version(self.framework)}"
        except PackageNotFoundError:
            return f"{self.framework} (version unknown)"

    def configuration(self) -> dict:
        """What else decides the numerics users get and the report records (name -> a JSON value),
        e.g. the compiler's options; empty for an eager framework."""
        return {}

    def device_status(self) -> dict:
        """Map each device in capabilities.devices to None (usable) or the reason it is not."""
        return {device: None if device == "cpu" else f"{device}: this adapter has no {device} support"
                for device in self.capabilities.devices}

    # The ops without state: each returns the output as a NumPy array.
    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
        raise NotImplementedError

    def group_norm(self, x, *, num_groups, weight, bias, eps, device):
        raise NotImplementedError

    def rms_norm(self, x, *, normalized_shape, weight, eps, device):
        raise NotImplementedError

    # The ops with running statistics build a layer object (see `Layer`) that the
    # suite calls several times, in training and evaluation, and whose state it reads.
    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device) -> "Layer":
        """running_mean/var None: keep the fresh layer's initial state (BN-4.3).
        momentum is in this adapter's convention; None asks for the cumulative average."""
        raise NotImplementedError

    def instance_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                            momentum, eps, device) -> "Layer":
        """running_mean/var None: a layer without running statistics (always input statistics);
        arrays: a layer that tracks running statistics, loaded with these values (IN-3)."""
        raise NotImplementedError

    # The backward pass, optional: declare the ops in capabilities.backward_ops.
    def vjp(self, op, x, dy, *, weight, bias, running_mean, running_var, training, eps, device, **attrs) -> dict:
        """The vector-Jacobian product (GRAD-1) of one forward call of `op`, through the
        framework's own autodiff: {"x": dx, "weight": dgamma, "bias": dbeta} as NumPy
        arrays, None for an absent parameter.

        dy has the shape and dtype of the output. attrs are the op's own attributes
        (normalized_shape, num_groups). For batch_norm and instance_norm, `training`
        selects batch/instance statistics, and evaluation uses running_mean/var (an
        instance_norm without them always uses instance statistics); the running
        statistics are never differentiated (GRAD-1). rms_norm gets bias=None.
        """
        raise NotImplementedError


    # The fitted scalers, optional: declare them in capabilities.scalers (spec/scalers.md).
    def standard_scaler(self, *, with_mean: bool, with_std: bool, device) -> "Scaler":
        """A fresh standardization (STD) with these options (STD-1)."""
        raise NotImplementedError

    def minmax_scaler(self, *, feature_range: tuple, clip: bool, device) -> "Scaler":
        """A fresh min-max scaling (MINMAX) onto feature_range = (a, b) (MINMAX-1)."""
        raise NotImplementedError

    def standard_scaler_given(self, *, mean, std, device) -> "Scaler":
        """A standardization that applies the given per-feature mean and standard deviation (NumPy
        arrays of shape (F,), in the data's dtype) without a fit (SCALE-9): only its `transform`
        is called. Declare it in capabilities.given_statistics."""
        raise NotImplementedError


    # Synchronized BatchNorm, optional: declare "sync_batch_norm" in capabilities.data_parallel.
    def sync_batch_norm_layer(self, *, replicas, num_features, dtype, weight, bias, running_mean, running_var,
                              momentum, eps, device) -> "ReplicatedLayer":
        """A BatchNorm replicated on `replicas` devices of the engine, its statistics reduced by the
        engine's own collective (DP-1 .. DP-5); arguments as batch_norm_layer's, the same on every
        replica. An adapter that declares Capabilities.mixed_precision also gets `param_dtype`, the
        dtype of weight, bias and the running statistics (NUM-2.3)."""
        raise NotImplementedError

    def sync_batch_norm_vjp(self, shards, cotangents, *, weight, bias, eps, device) -> dict:
        """The VJP (GRAD-1) of one synchronized training call on len(shards) replicas through the
        engine's own autodiff, replica r given shards[r] and the cotangent cotangents[r] of its output
        (DP-7): {"x": [dx per replica], "weight": [dgamma per replica], "bias": [dbeta per replica]},
        each replica's parameter gradients its own (before any cross-replica sum), None lists for an
        absent parameter. Declare "sync_batch_norm" in capabilities.data_parallel_backward. With
        Capabilities.mixed_precision it also gets `param_dtype`; the parameter gradients are then in
        that dtype (GRAD-8.2)."""
        raise NotImplementedError


class ReplicatedLayer:
    """A synchronized BatchNorm on R replicas, as an adapter builds it (spec DP).

    `__call__(shards, training=...)` runs one step on every replica, replica r given the NumPy array
    shards[r] (its batch size may differ between replicas and be 0, as Capabilities.shard_sizes
    declares), and returns the list of the R outputs; `running_stats()` returns the list of every
    replica's (running_mean, running_var), read from that replica (DP-4 compares them).
    """

    def __call__(self, shards, *, training: bool):
        raise NotImplementedError

    def running_stats(self):
        raise NotImplementedError


class Scaler:
    """A fitted scaler with state, as an adapter builds it (spec/scalers.md).

    `partial_fit(chunk)` fits one more (n, F) chunk (SCALE-2: the first call is a fit; further
    calls fit incrementally, SCALE-2.1); `transform(x)` and `inverse_transform(y)` return NumPy
    arrays of the input's shape and dtype; `statistics()` returns the fitted statistics as
    {name: NumPy array of shape (F,) or None where the implementation keeps none}, with the names
    of ScalerInfo.statistics: "mean", "variance", "scale" (standardization: the variance of the
    declared estimator, the divisor applied) or "data_min", "data_max", "scale" (min-max).
    """

    def partial_fit(self, x) -> None:
        raise NotImplementedError

    def transform(self, x):
        raise NotImplementedError

    def inverse_transform(self, y):
        raise NotImplementedError

    def statistics(self) -> dict:
        raise NotImplementedError


class Layer:
    """A normalization layer with state, as an adapter builds it.

    `__call__(x, training=...)` runs one step and returns the output; `running_stats()`
    returns (running_mean, running_var) as NumPy arrays, or (None, None) if none are kept.
    """

    def __call__(self, x, *, training: bool):
        raise NotImplementedError

    def running_stats(self):
        raise NotImplementedError


class FunctionalAdapter(Adapter):
    """The simplest form of adapter: NumPy functions, with the layer state kept for you.

    Implement any of layer_norm, group_norm, rms_norm (as in Adapter) and

        batch_norm(self, x, *, weight, bias, running_mean, running_var, training, momentum,
                   eps, num_batches_tracked, device) -> (output, running_mean, running_var)
        instance_norm(self, x, *, weight, bias, running_mean, running_var, training, momentum,
                      eps, device) -> (output, running_mean, running_var)

    which get the current state and return the new one. A fresh BatchNorm starts from
    mean 0 and variance 1 (BN-4.3) in the parameters' dtype (the input's, or `param_dtype`
    under mixed precision); InstanceNorm's running statistics are None when the layer keeps
    none. Declare `capabilities.ops` to match. Under mixed precision (`capabilities.mixed_precision`)
    every function also gets `param_dtype`, the parameters' and running statistics' dtype name.
    """

    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device, **mixed):
        if running_mean is None:
            state_dtype = numpy_dtype(mixed.get("param_dtype", dtype))
            running_mean, running_var = np.zeros(num_features, state_dtype), np.ones(num_features, state_dtype)

        def step(x, mean, var, training, count):
            return self.batch_norm(x, weight=weight, bias=bias, running_mean=mean, running_var=var,
                                   training=training, momentum=momentum, eps=eps, num_batches_tracked=count,
                                   device=device, **mixed)
        return FunctionalLayer(step, running_mean, running_var)

    def instance_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                            momentum, eps, device, **mixed):
        def step(x, mean, var, training, count):
            return self.instance_norm(x, weight=weight, bias=bias, running_mean=mean, running_var=var,
                                      training=training, momentum=momentum, eps=eps, device=device, **mixed)
        return FunctionalLayer(step, running_mean, running_var)


class FunctionalLayer(Layer):
    """A Layer around a functional form f(x, running_mean, running_var, training, count)
    that returns (output, running_mean, running_var): the state is kept here.

    Handy for NumPy-level implementations (kernels, the reference), which have no
    module objects of their own.
    """

    def __init__(self, function, running_mean, running_var):
        self._function = function
        self._mean, self._var, self._count = running_mean, running_var, 0

    def __call__(self, x, *, training: bool):
        output, self._mean, self._var = self._function(x, self._mean, self._var, training, self._count)
        self._count += bool(training)
        return output

    def running_stats(self):
        return self._mean, self._var


def python_int(value):
    """A NumPy integer as a Python int (frameworks' constructors test for int); anything else as given,
    for the framework to judge (int(1.5) would turn an invalid group count into a valid one)."""
    return int(value) if isinstance(value, Integral) else value
