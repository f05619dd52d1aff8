"""Keeps a process that runs the Flax adapters within its resources, and counts its jitted
calls and compilations for `normspec bench`.

Every compiled XLA:CPU executable keeps about ten memory mappings of JIT code alive while
JAX's caches hold it, and a suite run compiles thousands (one per shape drawn): at Linux's
default vm.max_map_count the next compile's mmap would fail and XLA would crash inside
backend_compile_and_load. `note_jitted_call` therefore drops all compiled code (the
per-structure caches here, the executables held in memory and jax.clear_caches()) once the
process holds half of its mapping limit; later calls just compile (or load) again.
"""
from __future__ import annotations

import gc
from functools import lru_cache

import jax

_CACHES = []


def cache(function):
    """Memoize a per-LayerStructure builder (modules, jitted callables): one entry per
    configuration, until compiled code is dropped."""
    cached = lru_cache(maxsize=None)(function)
    _CACHES.append(cached)
    return cached


_MAPS = "/proc/self/maps"
_CHECK_EVERY = 64  # jitted calls between two counts of the process's memory mappings


def _map_limit() -> int | None:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None  # not Linux: no per-process mapping count to bound


_MAP_LIMIT = _map_limit()

# calls: jitted calls made; backend_compiles: XLA compilations (an executable JAX loads from
# its own persistent cache is counted here too: _jax_executables.COUNTS["jax_cache_loads"]).
JIT_COUNTS = {"calls": 0, "backend_compiles": 0}


def _count_backend_compile(event: str, duration: float, **kwargs) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        JIT_COUNTS["backend_compiles"] += 1


jax.monitoring.register_event_duration_secs_listener(_count_backend_compile)


def note_jitted_call(drop_held_executables=None) -> None:
    """Count one jitted call; every _CHECK_EVERY calls, count the process's memory mappings
    and, past half of vm.max_map_count, drop every compiled executable (the module docstring
    says why), calling `drop_held_executables` for those held elsewhere (None: there are none)."""
    JIT_COUNTS["calls"] += 1
    if _MAP_LIMIT is None or JIT_COUNTS["calls"] % _CHECK_EVERY:
        return
    try:
        with open(_MAPS) as f:
            mappings = sum(1 for _ in f)
    except OSError:
        return
    if mappings > _MAP_LIMIT // 2:
        for cached in _CACHES:
            cached.cache_clear()
        if drop_held_executables is not None:
            drop_held_executables()
        jax.clear_caches()
        gc.collect()
