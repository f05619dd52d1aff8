"""`torch-compile`: the `torch` adapter's torch.nn modules under torch.compile, as users
compile a model: `torch.compile(module, dynamic=True)`, the inductor backend in its default
mode, on "cpu" and "cuda".

Not a built-in adapter yet (issue 26): it loads as
`normspec check normspec.adapters.torch_compile:TorchCompileAdapter`, has no expectations
file, and a ci check costs far more than its budget: Dynamo compiles once per module
configuration (eps, parameter shapes, affine flags, rank, dtype, grad mode), and the ci
profile builds 9,068 distinct configurations, at least 0.09 s each with a warm inductor cache and
1.3 s cold (benchmarks/torch_compile_configurations.py; docs/benchmarks.md, "torch.compile").

Every call compiles the module it is given (a new nn.Module each time, as in `torch`).
Dynamo caches per code object (the module class's `forward`) and guards on what the traced
graph depends on: the module's class, its constants (eps, momentum, normalized_shape,
num_groups, affine flags), the training flag, dtype, device and rank; parameters and
buffers are graph inputs and sizes are symbolic (`dynamic=True`), so a new batch size or a
new module instance compiles nothing. The compiled artefacts persist between runs in
inductor's on-disk caches (FX graph and AOTAutograd caches, on by default in torch 2.13):
TORCHINDUCTOR_CACHE_DIR, by default /tmp/torchinductor_<user>; `tox -e torch` keeps them in
its environment.

Dynamo stops compiling a code object after `recompile_limit` cache entries and then runs it
eagerly without a word, which would certify eager torch under this adapter's name. The limits
are raised far above what the suite reaches and `fail_on_recompile_limit_hit` turns reaching
them into an error: whatever passes here ran compiled. `configuration()` reports these
settings and every inductor option not at its default in the report.
"""
from __future__ import annotations

import os

import torch
import torch._dynamo.config as dynamo_config
import torch._inductor.config as inductor_config

from .torch_modules import TorchAdapter

# The suite's configurations (op, dtype, rank, eps, momentum, flags, training) stay below this
# per code object; reaching it raises instead of falling back to eager.
_RECOMPILE_LIMIT = 4096
dynamo_config.recompile_limit = _RECOMPILE_LIMIT
dynamo_config.accumulated_recompile_limit = 16 * _RECOMPILE_LIMIT
dynamo_config.fail_on_recompile_limit_hit = True

COMPILE_OPTIONS = dict(backend="inductor", mode=None, dynamic=True, fullgraph=False)


def _changed_options(config) -> dict:
    """The options of a torch ConfigModule whose value is not their default (plain values only)."""
    changed = {}
    for name, value in config.get_config_copy().items():
        entry = config._config.get(name)
        if entry is not None and value != entry.default and isinstance(value, (bool, int, float, str, type(None))):
            changed[name] = value
    return changed


class TorchCompileAdapter(TorchAdapter):
    """The `torch` modules, each run through torch.compile(module, **COMPILE_OPTIONS)."""

    id = "torch-compile"
    compiles_per_shape = True  # each op and dtype's tests in one worker, which finds their graphs compiled

    def _layout(self, module, x):
        module, x = super()._layout(module, x)
        return torch.compile(module, **COMPILE_OPTIONS), x

    def configuration(self) -> dict:
        from torch._inductor.runtime.cache_dir_utils import cache_dir
        return {
            "torch.compile": {name: "default" if value is None else value for name, value in COMPILE_OPTIONS.items()},
            "inductor cache dir": cache_dir(),
            "inductor fx_graph_cache": inductor_config.fx_graph_cache,
            "inductor options not at their default": _changed_options(inductor_config),
            "dynamo options not at their default": _changed_options(dynamo_config),
            "TORCHINDUCTOR_* / TORCH_COMPILE_* environment": {
                name: value for name, value in sorted(os.environ.items())
                if name.startswith(("TORCHINDUCTOR_", "TORCH_COMPILE_", "TORCHDYNAMO_"))},
        }
