"""The Flax adapters' executable cache (adapters/_jax_executables.py) must not change a result:
a process that loads every executable from disk answers as the process that compiled them
did, bit for bit; a damaged file is compiled again and replaced, not run or trusted; and an
executable compiled ahead of time answers as `jax.jit` does.

Skipped where JAX or Flax is not installed (the `jax` tox environment runs it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("flax")

# One process: every op forward (the layers' steps included) and BatchNorm's VJP through
# the adapter; it saves the outputs and the cache counts.
_SCRIPT = """
import json, sys
import numpy as np
from normspec.adapters import load_adapter
from normspec.adapters import _jax_executables
from normspec.tests.test_adapters import forward_calls, inputs
adapter = load_adapter(sys.argv[1])
outputs = forward_calls(adapter, seed=4, eps=1e-5, momentum=0.1)
x, weight, bias = inputs(5)
grads = adapter.vjp("layer_norm", x, inputs(6)[0], weight=weight, bias=bias, running_mean=None, running_var=None,
                    training=True, eps=1e-5, device="cpu", normalized_shape=(6,))
outputs.update({f"vjp {k}": v for k, v in grads.items()})
np.savez(sys.argv[2], **outputs)
print(json.dumps(_jax_executables.COUNTS))
"""


def _run(adapter_id, cache_dir, out):
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache_dir))
    done = subprocess.run([sys.executable, "-c", _SCRIPT, adapter_id, str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), np.load(out)


@pytest.mark.parametrize("adapter_id", ["flax-linen", "flax-nnx"])
def test_executables_loaded_from_disk_answer_as_compiled_ones(adapter_id, tmp_path):
    compiled_counts, compiled = _run(adapter_id, tmp_path / "cache", tmp_path / "compiled.npz")
    loaded_counts, loaded = _run(adapter_id, tmp_path / "cache", tmp_path / "loaded.npz")
    assert compiled_counts["compiles"] > 0 and compiled_counts["disk_loads"] == 0, compiled_counts
    assert loaded_counts == {"compiles": 0, "disk_loads": compiled_counts["compiles"], "jax_cache_loads": 0}, (
        f"the second process should load every executable the first compiled: {compiled_counts} then "
        f"{loaded_counts}")
    assert sorted(loaded.files) == sorted(compiled.files)
    for name in compiled.files:
        np.testing.assert_array_equal(loaded[name], compiled[name], err_msg=f"{adapter_id} {name}: loaded from "
                                      "disk it differs from the freshly compiled executable's")


@pytest.mark.parametrize("adapter_id", ["flax-linen"])
def test_a_damaged_executable_file_is_compiled_again(adapter_id, tmp_path):
    compiled_counts, compiled = _run(adapter_id, tmp_path / "cache", tmp_path / "compiled.npz")
    files = list((tmp_path / "cache" / "normspec-executables").iterdir())
    assert len(files) == compiled_counts["compiles"], "every fresh compilation should be on disk"
    for path in files:  # what a disk error or a foreign file would leave
        path.write_bytes(b"not an executable")
    recompiled_counts, recompiled = _run(adapter_id, tmp_path / "cache", tmp_path / "recompiled.npz")
    assert recompiled_counts == compiled_counts, recompiled_counts
    for name in compiled.files:
        np.testing.assert_array_equal(recompiled[name], compiled[name], err_msg=f"{adapter_id} {name}")
    assert all(path.read_bytes() != b"not an executable" for path in files), "damaged files should be replaced"


@pytest.mark.parametrize("adapter_id", ["flax-linen", "flax-nnx"])
def test_an_executable_compiled_ahead_of_time_answers_as_jit_does(adapter_id):
    import jax

    from normspec.adapters import load_adapter
    from normspec.adapters._jax_common import LayerStructure, jitted_call

    adapter = load_adapter(adapter_id)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 3, 8)).astype(np.float32)
    weight, bias = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    spec = LayerStructure("batch_norm", "float32", (8,), True, True)
    stats = {"mean": rng.standard_normal(8).astype(np.float32), "var": rng.uniform(0.5, 2, 8).astype(np.float32)}
    layer = adapter.batch_norm_layer(num_features=8, dtype="float32", weight=weight, bias=bias,
                                     running_mean=stats["mean"], running_var=stats["var"], momentum=0.1, eps=1e-3,
                                     device="cpu")
    through_cache = layer(x, training=True), *layer.running_stats()
    jax.clear_caches()
    output, new_stats = jitted_call(type(adapter)._call, spec)({"scale": weight, "bias": bias}, stats, x, 1e-3, 0.1,
                                                                 training=True)
    for name, got, want in zip(("output", "running mean", "running var"), through_cache,
                               (output, new_stats["mean"], new_stats["var"])):
        np.testing.assert_array_equal(got, np.asarray(want), err_msg=f"{adapter_id} BatchNorm {name}")
