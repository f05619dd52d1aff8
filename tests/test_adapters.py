"""What an adapter does between calls must not show: every built-in adapter, called before
with another eps, momentum and input (the Keras adapter re-uses its layers across eps and
momenta; the Flax ones their compiled programs), answers as a fresh adapter does, bit for bit.

Each adapter whose framework is not installed is skipped (the tox environment of that
framework runs it).
"""
from __future__ import annotations

import numpy as np
import pytest

from normspec.adapters import BUILTIN, load_adapter
from normspec.errors import UsageError

SHAPE = (4, 6, 6)  # 6 channels on either channel axis; LayerNorm/RMSNorm over the last 6


def fresh(adapter_id):
    try:
        return load_adapter(adapter_id)
    except UsageError as error:
        pytest.skip(str(error))


def inputs(seed):
    """x, a per-channel weight and bias (6 either way), float32."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(SHAPE).astype(np.float32), rng.uniform(0.5, 2.0, 6).astype(np.float32),
            rng.standard_normal(6).astype(np.float32))


def forward_calls(adapter, seed, eps, momentum) -> dict:
    """Every op's outputs for one configuration (the layers: two training steps, then evaluation,
    and BatchNorm's running statistics)."""
    x, weight, bias = inputs(seed)
    common = dict(weight=weight, eps=eps, device="cpu")
    calls = {
        "layer_norm": lambda: adapter.layer_norm(x, normalized_shape=(6,), bias=bias, **common),
        "rms_norm": lambda: adapter.rms_norm(x, normalized_shape=(6,), **common),
        "group_norm": lambda: adapter.group_norm(x, num_groups=3, bias=bias, **common),
    }
    outputs = {op: call() for op, call in calls.items() if op in adapter.capabilities.ops}
    layers = {}
    for op in [op for op in ("batch_norm", "instance_norm") if op in adapter.capabilities.ops]:
        make_layer = getattr(adapter, f"{op}_layer")
        layer = layers[op] = make_layer(num_features=6, dtype="float32", bias=bias, running_mean=None,
                                        running_var=None, momentum=momentum, **common)
        outputs[f"{op} training step 1"] = layer(x, training=True)
        outputs[f"{op} training step 2"] = layer(x[::-1] * 2, training=True)
        outputs[f"{op} evaluation"] = layer(x, training=False)
    if "batch_norm" in layers:
        outputs["batch_norm running mean"], outputs["batch_norm running var"] = layers["batch_norm"].running_stats()
    outputs.update(scaler_calls(adapter, seed, with_options=momentum < 0.5))
    outputs.update(sync_calls(adapter, seed, eps=eps, momentum=momentum))
    return outputs


def sync_calls(adapter, seed, *, eps, momentum) -> dict:
    """Synchronized BatchNorm (spec DP) on 2 replicas, uneven shards where declared: two training steps, evaluation,
    every replica's running statistics and the per-shard VJP; none where the engine lacks the devices."""
    if "sync_batch_norm" not in adapter.capabilities.data_parallel or adapter.device_status().get("cpu"):
        return {}
    x, weight, bias = inputs(seed)
    shards = [x[:3], x[3:]] if "uneven" in adapter.capabilities.shard_sizes else [x[:2], x[2:]]
    layer = adapter.sync_batch_norm_layer(replicas=2, num_features=6, dtype="float32", weight=weight, bias=bias,
                                          running_mean=None, running_var=None, momentum=momentum, eps=eps,
                                          device="cpu")
    outputs = {}
    for label, step, training in (("training step 1", shards, True), ("training step 2", shards[::-1], True),
                                  ("evaluation", shards, False)):
        outputs.update({f"sync {label} replica {r}": y for r, y in enumerate(layer(step, training=training))})
    for r, (mean, var) in enumerate(layer.running_stats()):
        outputs[f"sync running mean replica {r}"], outputs[f"sync running var replica {r}"] = mean, var
    if "sync_batch_norm" in adapter.capabilities.data_parallel_backward:
        gradient = adapter.sync_batch_norm_vjp(shards, [s[::-1] for s in shards], weight=weight, bias=bias, eps=eps,
                                               device="cpu")
        outputs.update({f"sync vjp {name} replica {r}": g for name, values in gradient.items()
                        for r, g in enumerate(values or ())})
    return outputs


def scaler_calls(adapter, seed, *, with_options: bool) -> dict:
    """The fitted scalers' outputs (spec/scalers.md) on x viewed as (samples, features): two
    partial fits, a transform and its inverse, and the statistics; other options for a used adapter."""
    x = inputs(seed)[0].reshape(-1, SHAPE[-1])
    options = {"standard_scaler": {"with_mean": with_options, "with_std": True},
               "minmax_scaler": {"feature_range": (-1.0, 1.0) if with_options else (0.0, 2.0), "clip": with_options}}
    outputs = {}
    for op in adapter.capabilities.scalers:
        # An option the adapter supports in part (Capabilities.scaler_options) takes a supported value.
        chosen = {name: value if value in adapter.capabilities.scaler_options.get(name, (value,))
                  else adapter.capabilities.scaler_options[name][0] for name, value in options[op].items()}
        scaler = getattr(adapter, op)(**chosen, device="cpu")
        scaler.partial_fit(x[:10])
        scaler.partial_fit(x[10:])
        y = outputs[f"{op} transform"] = scaler.transform(x[::-1] * 2)
        outputs[f"{op} inverse"] = scaler.inverse_transform(y)
        outputs.update({f"{op} {name}": value for name, value in scaler.statistics().items() if value is not None})
    return outputs


@pytest.mark.parametrize("adapter_id", BUILTIN)
def test_an_adapter_answers_as_a_fresh_one_after_other_calls(adapter_id):
    used = fresh(adapter_id)
    forward_calls(used, seed=0, eps=1e-3, momentum=0.5)
    after_use = forward_calls(used, seed=1, eps=1e-5, momentum=0.1)
    first_use = forward_calls(fresh(adapter_id), seed=1, eps=1e-5, momentum=0.1)
    for name, expected in first_use.items():
        np.testing.assert_array_equal(after_use[name], expected, err_msg=f"{adapter_id} {name}: after calls with "
                                      f"eps=1e-3 and momentum=0.5 it differs from a fresh adapter's")


@pytest.mark.parametrize("adapter_id", BUILTIN)
def test_an_adapter_differentiates_as_a_fresh_one_after_other_calls(adapter_id):
    used = fresh(adapter_id)
    if "batch_norm" not in used.capabilities.backward_ops:
        pytest.skip(f"not run: {adapter_id} declares no BatchNorm backward (Capabilities.backward_ops)")
    x, weight, bias = inputs(2)
    dy = inputs(3)[0]
    call = dict(weight=weight, bias=bias, running_mean=None, running_var=None, training=True, device="cpu")
    used.vjp("batch_norm", x, dy, eps=1e-3, **call)
    after_use = used.vjp("batch_norm", x, dy, eps=1e-5, **call)
    first_use = fresh(adapter_id).vjp("batch_norm", x, dy, eps=1e-5, **call)
    for name, expected in first_use.items():
        np.testing.assert_array_equal(after_use[name], expected, err_msg=f"{adapter_id} vjp {name}")
