"""What a `torch-compile` adapter would cost (issue 26): how many distinct module configurations the
ci profile's torch check builds, and what torch.compile spends on each new one.

Dynamo compiles once per configuration it has not seen in the process: the module's class, its
constants (eps, momentum, normalized_shape, num_groups, num_features through the parameters' static
shapes, affine flags), rank, dtype and training flag. A check that compiles every module the torch
check builds pays that cost per distinct configuration.

    python benchmarks/torch_compile_configurations.py count    # runs `normspec check` (~1 min)
    python benchmarks/torch_compile_configurations.py compile  # per-configuration compile cost

`count` runs the ci profile's torch check with an adapter that records each module's configuration
(it builds the same modules as `torch`, uncompiled) and prints the distinct configurations, then
the counts left if the widths were symbolic, if eps and momentum were graph inputs, and both.
`compile` times torch.compile(module, dynamic=True) on twelve LayerNorm configurations (four widths,
three eps) in a fresh inductor cache and again with it warm, each in a process of its own, and a
functional F.layer_norm under dynamic=True over the same configurations.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from normspec.adapters.torch_modules import TorchAdapter

_KEYS_DIR = "NORMSPEC_BENCH_KEYS_DIR"


class ConfigurationCountingAdapter(TorchAdapter):
    """The torch adapter, recording every module configuration it runs (what Dynamo would guard on)."""

    id = "torch-configurations"

    def _layout(self, module, x):
        import torch
        module, x = super()._layout(module, x)
        key = (type(module).__name__, repr(module), x.dim(), str(x.dtype), module.training, torch.is_grad_enabled())
        with open(Path(os.environ[_KEYS_DIR]) / f"keys.{os.getpid()}", "a") as out:
            out.write(repr(key) + "\n")
        return module, x


def _without(keys: set, pattern: str) -> set:
    return {(name, re.sub(pattern, "?", text), *rest) for name, text, *rest in keys}


def count() -> None:
    with tempfile.TemporaryDirectory() as keys_dir:
        env = {**os.environ, _KEYS_DIR: keys_dir, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "normspec"), "check",
                        "torch_compile_configurations:ConfigurationCountingAdapter"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        wall = time.perf_counter() - started
        lines = [line for path in Path(keys_dir).glob("keys.*") for line in path.read_text().splitlines()]
    keys = {ast.literal_eval(line) for line in lines}
    widths = r"^\w+\((\([^)]*\)|\d+)(, \d+)?"
    floats = _without(keys, r"(eps|momentum)=[^,)]*")
    print(f"ci profile torch check ({wall:.0f} s): {len(lines):,} module calls, {len(keys):,} distinct configurations")
    print(f"  with the widths symbolic (the functional form under dynamic=True): {len(_without(keys, widths)):,}")
    print(f"  with eps and momentum as graph inputs: {len(floats):,}")
    print(f"  with both: {len(_without(floats, widths)):,}")


_PROBE = r"""
import sys, time, torch, torch._dynamo.config as c
import torch.nn as nn, torch.nn.functional as F
c.recompile_limit = 4096
functional = sys.argv[1] == "functional"
@torch.compile(dynamic=True)
def layer_norm(x, shape, w, b, eps):
    return F.layer_norm(x, shape, w, b, eps)
times = []
for width in (8, 16, 24, 40):
    for eps in (1e-5, 1e-3, 1e-6):
        x = torch.randn(4, width)
        started = time.perf_counter()
        if functional:
            layer_norm(x, (width,), torch.ones(width), torch.zeros(width), eps)
        else:
            torch.compile(nn.LayerNorm(width, eps=eps), dynamic=True)(x)
        times.append(time.perf_counter() - started)
from torch._dynamo.utils import counters
print(f"{sys.argv[1]}: graphs {counters['stats']['unique_graphs']}, first call {times[0]:.2f} s, "
      f"each later configuration {sum(times[1:]) / len(times[1:]):.3f} s")
"""


def compile_cost() -> None:
    with tempfile.TemporaryDirectory() as cache:
        for form in ("module", "functional"):  # each form from an empty cache of its own, then warm
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(cache, form)}
            for label in ("cold cache", "warm cache"):
                result = subprocess.run([sys.executable, "-c", _PROBE, form], env=env, capture_output=True, text=True)
                print(f"{label}: {result.stdout.strip() or result.stderr.strip()[-300:]}")


if __name__ == "__main__":
    {"count": count, "compile": compile_cost}[sys.argv[1] if len(sys.argv) > 1 else "count"]()
