"""The Flax adapters' compiled executables, kept by normspec in memory and on disk.

Why: a warm run spent most of its time re-creating executables compiled before. JAX's
persistent cache is keyed by the lowered program, so each load from it first traces and
lowers the call again, which costs more than loading the executable (docs/benchmarks.md).
Here the key is what fixes the program without tracing it: the API's call function, the
layer structure, the direction (forward, VJP or a BatchNorm's construction), the training flag,
the device, and the arguments' tree, shapes and dtypes; on disk also the versions of jax,
jaxlib and flax, the adapters' own source, JAX's options, XLA_FLAGS and the platform.

The executable is what `jitted.lower(*args).compile()` makes, the ahead-of-time path of the
same `jax.jit`, so it computes what the jitted call computes (tests/test_jax_executables.py
holds executables loaded from disk to freshly compiled ones, and an ahead-of-time executable
to a jit call, bit for bit).

On disk: the folder `normspec-executables` in JAX's compilation cache directory, when one
is set (`JAX_COMPILATION_CACHE_DIR`; the `jax` tox environment sets it), one compressed file
per executable, written atomically so that pytest-xdist workers and later runs share them.
Like JAX's own cache, loading an executable runs code from that folder: keep it private.
It replaces JAX's persistent cache in the process: `activate` turns that off before the
first compilation, since JAX decides once per process whether to use it. Only fresh
compilations may be written: in jax 0.10.2 an executable that JAX loaded from its cache
serializes into a copy that fails when run ("Function wrapped_reduce not found"), so a
compilation during which JAX reports a cache hit stays in memory only.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import zlib
from pathlib import Path

import jax
from jax.experimental import serialize_executable

from ._jax_process import note_jitted_call

_FORMAT = "normspec-executable-2"  # 2: the file holds the executable's in/out trees
_SOURCES = ("_jax_common.py", "_jax_executables.py", "_jax_process.py", "flax_linen.py", "flax_nnx.py")

# compiles: fresh ones here; disk_loads: from this module's folder; jax_cache_loads: executables
# JAX loaded from its own persistent cache (where that is on: any jitted call in the process).
COUNTS = {"compiles": 0, "disk_loads": 0, "jax_cache_loads": 0}
_loaded: dict = {}  # key -> jax.stages.Compiled, until `clear`
_environment: str | None = None
_directory: Path | None = None


def activate() -> None:
    """Keep executables on disk when JAX has a compilation cache directory, and turn JAX's
    own persistent cache off for this process (the module docstring says why)."""
    global _directory
    root = jax.config.jax_compilation_cache_dir
    if root:
        _directory = Path(root) / "normspec-executables"
        jax.config.update("jax_enable_compilation_cache", False)


def _count_jax_cache_hit(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        COUNTS["jax_cache_loads"] += 1


jax.monitoring.register_event_listener(_count_jax_cache_hit)


def run(jitted, key: tuple, args: tuple, *, static: dict, device):
    """jitted(*args, **static), through the executable for `key` and the arguments' signature:
    in memory, else loaded from disk, else compiled (and written to disk)."""
    note_jitted_call(clear)
    full_key = key + (tuple(sorted(static.items())), _signature(args))
    compiled = _loaded.get(full_key)
    if compiled is None:
        path = _path(full_key)
        compiled = _load(path, device) if path is not None else None
        if compiled is None:
            compiled = _compile(jitted, path, args, static)
        _loaded[full_key] = compiled
    return compiled(*args)


def clear() -> None:
    """Drop the executables held in memory (_jax_process.note_jitted_call)."""
    _loaded.clear()


def _signature(args) -> tuple:
    """What of the arguments fixes the program: their tree and, per leaf, a Python scalar's type
    or an array's shape and dtype (and a JAX array's weak type and commitment to its device)."""
    leaves, tree = jax.tree.flatten(args)
    return str(tree), tuple(type(leaf).__name__ if isinstance(leaf, (bool, int, float)) else
                            (tuple(leaf.shape), str(leaf.dtype), getattr(leaf, "weak_type", None),
                             getattr(leaf, "committed", None)) for leaf in leaves)


def _path(full_key) -> Path | None:
    if _directory is None:
        return None
    name = hashlib.sha256(repr((_FORMAT, _environment_key(), full_key)).encode()).hexdigest()
    return _directory / name


def _environment_key() -> str:
    global _environment
    if _environment is None:
        import jaxlib
        try:
            from flax import __version__ as flax_version
        except ImportError:  # the Equinox adapters run without Flax
            flax_version = None
        here = Path(__file__).parent
        sources = hashlib.sha256(b"".join((here / name).read_bytes() for name in _SOURCES)).hexdigest()
        platforms = [(d.platform, d.device_kind, d.client.platform_version) for d in jax.devices()]
        # Every JAX option with a plain value (x64, dtype promotion, default precision, ...).
        options = sorted((name, value) for name, value in jax.config.values.items()
                         if value is None or isinstance(value, (bool, int, float, str)))
        _environment = repr((jax.__version__, jaxlib.__version__, flax_version, options,
                             os.environ.get("XLA_FLAGS", ""), platforms, sources))
    return _environment


def _load(path: Path, device):
    try:
        payload, in_tree, out_tree = pickle.loads(zlib.decompress(path.read_bytes()))
    except Exception:  # noqa: BLE001 - not there yet, unreadable or damaged: compile (and replace it)
        return None
    from ._jax_common import jax_device
    target = jax.devices()[0] if device is None else jax_device(device)
    try:
        compiled = serialize_executable.deserialize_and_load(payload, in_tree, out_tree, backend=target.client,
                                                             execution_devices=[target])
    except Exception:  # noqa: BLE001 - a stale or damaged file: compile again and replace it
        return None
    COUNTS["disk_loads"] += 1
    return compiled


def _compile(jitted, path: Path | None, args, static):
    hits = COUNTS["jax_cache_loads"]
    compiled = jitted.lower(*args, **static).compile()
    COUNTS["compiles"] += 1
    fresh = COUNTS["jax_cache_loads"] == hits  # not loaded from JAX's cache (see the module docstring)
    if path is not None and fresh:
        try:
            serialized = serialize_executable.serialize(compiled)  # (payload, in_tree, out_tree)
        except (ValueError, NotImplementedError):
            return compiled  # this executable cannot be serialized: it stays in memory only
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_bytes(zlib.compress(pickle.dumps(serialized), 1))
        os.replace(partial, path)  # atomic: another worker reads the whole file or none
    return compiled
