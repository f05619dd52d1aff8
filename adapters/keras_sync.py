"""`keras-sync`: synchronized BatchNorm as a Keras user runs it on R devices (spec DP):
`keras.layers.BatchNormalization(synchronized=True)` on the TensorFlow backend, created under a
`tf.distribute.MirroredStrategy` over R logical CPU devices and called with `strategy.run`, so the
statistics are reduced by Keras' own `ReplicaContext.all_reduce` (keras/src/backend/tensorflow/nn.py,
`_compute_moments_sync`). Checked against keras 3.15.1 with tensorflow-cpu 2.21.0.

Every replica gets its own shard through `strategy.experimental_distribute_values_from_function`,
which takes a tensor of any batch size per replica: uneven and empty shards are passed as they are,
without padding or mask. The calls run eagerly (Keras' default outside `fit`). The layer is Keras'
default (channels last, dtype = the input dtype; Keras' conventions: momentum is the old value's
weight, biased moving variance); its fresh moving statistics are those Keras' initializers give, the
given ones are assigned to the MirroredVariables in cross-replica context (every replica), and each
replica's moving statistics are read back from that replica's component
(`strategy.experimental_local_results`). The per-shard VJP is tf.GradientTape inside the replica
function, as a custom training step takes it: each replica's own gamma/beta gradient, before the
optimizer's cross-replica sum; TensorFlow differentiates Keras' all_reduce.

MirroredStrategy numbers its collective groups from 1 in every instance, and two strategies of
different sizes in one process then clash (TensorFlow aborts its collective executor): `_strategy`
gives each size its own key range, the reduction itself is the default (RING collectives on CPU).

TensorFlow fixes its logical devices when its runtime starts: importing this module splits the
physical CPU into 8 logical devices (`tf.config.set_logical_device_configuration`), which it can
only do before anything in the process has started TensorFlow's runtime (the `keras` and `tf-nn`
adapters do, by running an op). A process where that already happened keeps its devices, and
device_status reports "not run" with the reason: run keras-sync in a pytest process of its own.
"""
from __future__ import annotations

import functools

import numpy as np

from normspec.dtypes import MIXED_PRECISION

from ._tf_common import tf, tf_version  # imports TensorFlow (quietly), starts no runtime
from .base import Adapter, Capabilities, ReplicatedLayer

_DEVICES = 8


def _configure_devices():
    """Split the physical CPU into _DEVICES logical devices; None, or why it could not be done."""
    try:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * _DEVICES)
    except RuntimeError as error:  # "Virtual devices cannot be modified after being initialized"
        return str(error)
    return None


_CONFIGURE_ERROR = _configure_devices()  # before Keras is imported or any op runs

from ._keras_common import CONVENTIONS, import_keras, policy  # noqa: E402

keras = import_keras("tensorflow", "keras-sync")


@functools.lru_cache(maxsize=None)
def _strategy(replicas: int):
    """The MirroredStrategy over the first `replicas` logical CPU devices, with its default cross-device ops
    (RING collectives on CPU). Every MirroredStrategy numbers its collective groups from 1 +
    `_collective_key_base` (0), so a second strategy of another size in the same process joins group 1 with
    a different size and TensorFlow aborts its collective executor ("joining a group with size 5, but that
    group has size 2"): each size gets its own key range through that class attribute, which TensorFlow's
    own tests set for the same reason. It names the groups only; the reduction is the default one."""
    saved = tf.distribute.MirroredStrategy._collective_key_base
    tf.distribute.MirroredStrategy._collective_key_base = 10_000 * replicas
    try:
        return tf.distribute.MirroredStrategy(devices=[f"/cpu:{r}" for r in range(replicas)])
    finally:
        tf.distribute.MirroredStrategy._collective_key_base = saved


def _build(strategy, rank, channels, dtype, use_scale, use_bias, eps, momentum):
    """BatchNormalization(synchronized=True) created in the strategy's scope and built for inputs of `rank`."""
    with strategy.scope():
        layer = keras.layers.BatchNormalization(synchronized=True, momentum=momentum, epsilon=eps, scale=use_scale,
                                                center=use_bias, dtype=dtype)
        layer.build((None,) * (rank - 1) + (channels,))
    return layer


def _distribute(strategy, arrays):
    """The per-replica values: replica r's tensor is arrays[r], on that replica's device."""
    devices = strategy.extended.worker_devices

    def value(context):
        r = context.replica_id_in_sync_group
        with tf.device(devices[r]):
            return tf.constant(arrays[r])
    return strategy.experimental_distribute_values_from_function(value)


def _local(strategy, value):
    return [np.asarray(v.numpy()) for v in strategy.experimental_local_results(value)]


class KerasSyncLayer(ReplicatedLayer):
    """One Keras BatchNormalization(synchronized=True) under the strategy of R replicas; its moving
    statistics are MirroredVariables, one component per replica. Keras fixes a built layer's input rank
    (its InputSpec): a call of another rank gets a layer built for that rank, which takes over the
    previous one's variables."""

    def __init__(self, replicas, layer, strategy, config):
        self._replicas, self._layer, self._strategy, self._config = replicas, layer, strategy, config
        self._rank = 2

    def _for_rank(self, rank):
        if rank != self._rank:
            layer = _build(self._strategy, rank, **self._config)
            with self._strategy.scope():
                for old, new in zip(self._layer.weights, layer.weights):
                    new.value.assign(old.value.read_value() if hasattr(old.value, "read_value") else old.value)
            self._layer, self._rank = layer, rank
        return self._layer

    def __call__(self, shards, *, training: bool):
        if len(shards) != self._replicas:
            raise ValueError(f"{len(shards)} shards for a layer on {self._replicas} replicas")
        layer, training = self._for_rank(shards[0].ndim), bool(training)
        x = _distribute(self._strategy, [np.array(s) for s in shards])
        y = self._strategy.run(lambda x: layer(x, training=training), args=(x,))
        return _local(self._strategy, y)

    def running_stats(self):
        means = _local(self._strategy, self._layer.moving_mean.value)
        variances = _local(self._strategy, self._layer.moving_variance.value)
        return list(zip(means, variances))


class KerasSyncAdapter(Adapter):
    id = "keras-sync"
    framework = "keras"
    conventions = CONVENTIONS
    capabilities = Capabilities(ops=(), dtypes=("float16", "bfloat16", "float32", "float64"), devices=("cpu",),
                                data_parallel=("sync_batch_norm",), data_parallel_backward=("sync_batch_norm",),
                                mixed_precision=MIXED_PRECISION, max_replicas=_DEVICES,
                                shard_sizes=("uneven", "empty"))
    environment = {"KERAS_BACKEND": "tensorflow"}

    def framework_version(self) -> str:
        return f"{super().framework_version()} ({tf_version()} backend)"

    def device_status(self) -> dict:
        count = len(tf.config.list_logical_devices("CPU"))
        if count >= _DEVICES:
            return {"cpu": None}
        reason = f"; splitting the CPU failed: {_CONFIGURE_ERROR}" if _CONFIGURE_ERROR else ""
        return {"cpu": f"cpu: TensorFlow has {count} logical CPU device(s), {_DEVICES} needed{reason}. TensorFlow "
                       f"fixes its logical devices when its runtime starts: run keras-sync in a process of its own "
                       f"where nothing ran TensorFlow before this adapter's import (not beside keras or tf-nn)"}

    def sync_batch_norm_layer(self, *, replicas, num_features, dtype, weight, bias, running_mean, running_var,
                              momentum, eps, device, param_dtype=None):
        strategy = _strategy(int(replicas))
        dtype = str(np.dtype(dtype))
        variables = str(np.dtype(param_dtype or dtype))  # Keras' mixed policy keeps its variables in float32
        config = dict(channels=int(num_features), dtype=policy(dtype, param_dtype), use_scale=weight is not None,
                      use_bias=bias is not None, eps=float(eps), momentum=float(momentum))
        layer = _build(strategy, 2, **config)
        with strategy.scope():
            for name, value in (("gamma", weight), ("beta", bias), ("moving_mean", running_mean),
                                ("moving_variance", running_var)):
                if value is not None:
                    getattr(layer, name).value.assign(np.asarray(value, dtype=variables))
        return KerasSyncLayer(int(replicas), layer, strategy, config)

    def sync_batch_norm_vjp(self, shards, cotangents, *, weight, bias, eps, device, param_dtype=None):
        """Every replica's input gradient and its own gamma/beta gradient of one training call, from
        tf.GradientTape inside the replica function (as a custom training step takes them, before the
        optimizer's all-reduce); TensorFlow differentiates Keras' all_reduce."""
        replicas, dtype = len(shards), str(np.dtype(shards[0].dtype))
        strategy = _strategy(replicas)
        layer = _build(strategy, shards[0].ndim, channels=int(shards[0].shape[-1]), dtype=policy(dtype, param_dtype),
                       use_scale=weight is not None, use_bias=bias is not None, eps=float(eps), momentum=_VJP_MOMENTUM)
        with strategy.scope():
            for name, value in (("gamma", weight), ("beta", bias)):
                if value is not None:
                    getattr(layer, name).value.assign(np.asarray(value, dtype=str(np.dtype(param_dtype or dtype))))
        x = _distribute(strategy, [np.array(s) for s in shards])
        dy = _distribute(strategy, [np.array(c) for c in cotangents])
        params = (layer.gamma if weight is not None else None, layer.beta if bias is not None else None)

        def step(x, dy):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
            watched = [p.value for p in params if p is not None]
            return tape.gradient(y, [x, *watched], output_gradients=dy)

        grads = strategy.run(step, args=(x, dy))
        dx = _local(strategy, grads[0])
        out, k = {"x": dx}, 1
        for name, p in (("weight", params[0]), ("bias", params[1])):
            if p is None:
                out[name] = None
            else:
                out[name] = _local(strategy, grads[k])
                k += 1
        return out


# The momentum of a backward call: it weights only the moving statistics, which the VJP discards.
_VJP_MOMENTUM = 0.99
