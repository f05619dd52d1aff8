"""`normspec bench`: how long `normspec check` takes per adapter, against the time spent
inside the implementation (docs/benchmarks.md explains the columns)."""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from normspec.adapters import load_adapter
from normspec.report import timing_totals


def run(args, check) -> int:
    """Per adapter: wall time of the check, examples per second, time per call inside the
    implementation (the floor), suite time per example over that floor, JIT cache hit rate."""
    header = (f"{'adapter':<20} {'wall s':>7} {'examples':>8} {'ex/s':>6} {'calls':>7} {'call us':>8} "
              f"{'suite/ex us':>11} {'ratio':>6} {'cache hit':>9} {'from disk':>9}  result")
    print(header)
    for target in args.targets:
        with tempfile.TemporaryDirectory() as directory:
            arguments = argparse.Namespace(target=target, ops=args.ops, dtypes=args.dtypes, devices="cpu",
                                       profile=args.profile, examples=args.examples, expectations=None,
                                       report=directory, spec_version=None, workers=args.workers, call_timeout=60.0,
                                       test_timeout=900.0)
            start = time.perf_counter()
            status = check(arguments, [], quiet=not args.verbose)
            wall = time.perf_counter() - start
            path = os.path.join(directory, "report.json")
            report = json.load(open(path)) if os.path.exists(path) else {}
            timing = report.get("timing", {}).get(_adapter_id(target), {})
        examples, calls = timing.get("examples", 0), timing.get("calls", 0)
        per_call = timing.get("call_seconds", 0) / calls if calls else float("nan")
        # Time per example counts every worker: N workers sharing the wall time do N times the work.
        per_example = wall * args.workers / examples if examples else float("nan")
        floor = per_call * calls / examples if examples else float("nan")
        hits, misses = _counter(timing, "cache_hits"), _counter(timing, "cache_misses")
        hit_rate = f"{hits / (hits + misses):.0%}" if hits + misses else "-"
        loads = _counter(timing, "persistent_loads")
        from_disk = f"{loads / hits:.0%}" if hits else "-"
        result = {0: "conforms", 1: "non-conformance", 2: "usage error"}.get(status, str(status))
        print(f"{target:<20} {wall:7.1f} {examples:8.0f} {examples / wall:6.1f} {calls:7.0f} {per_call * 1e6:8.1f} "
              f"{per_example * 1e6:11.0f} {per_example / floor if floor else float('nan'):6.1f} {hit_rate:>9} {from_disk:>9}  {result}")
        if args.slowest:
            _print_slowest(report.get("results", []), args.slowest)
    return 0


def _counter(timing: dict, suffix: str) -> float:
    """The sum of the adapter statistics() counters whose names end in `suffix`."""
    return sum(value for key, value in timing.items() if key.endswith(suffix))


def _print_slowest(results: list, count: int) -> None:
    """The `count` tests that took longest, each summed over its ops, dtypes and devices: wall
    time (all workers), examples and, for JIT adapters, executables compiled and loaded."""
    tests = timing_totals(results, by="test")
    jit = any(_counter(t, "cache_misses") or _counter(t, "persistent_loads") for t in tests.values())
    print("  slowest tests (summed over ops, dtypes and devices):")
    for name, total in sorted(tests.items(), key=lambda item: -item[1].get("wall", 0.0))[:count]:
        print(f"    {name or '?':<52} {total.get('wall', 0.0):7.1f} s {total.get('examples', 0):7.0f} examples"
              + (f" {_counter(total, 'cache_misses'):6.0f} compiled {_counter(total, 'persistent_loads'):6.0f} loaded"
                 if jit else ""))


def _adapter_id(target: str) -> str:
    return load_adapter(target).id
