"""The `normspec` command: read the spec, list adapters, run the conformance check.

    normspec spec --list            every clause ID with its title
    normspec spec NUM-1.1 BN-4      the text of clauses
    normspec adapters               built-in adapters and whether they load here
    normspec check TARGET [...]     the conformance suite against an adapter
    normspec bench TARGET [...]     how long the check takes, against the raw call time

Exit status of `check`: 0 all pass or expected, 1 a non-conformance (or an
expectation that no longer fails), 2 a usage or configuration error.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from importlib.resources import files

from normspec import __version__, clauses
from normspec.adapters import BUILTIN, DTYPES, OPS, load_adapter
from normspec.errors import UsageError
from normspec.report import timing_totals


def _spec(args) -> int:
    if args.version:
        print(clauses.spec_version())
        return 0
    if args.list or not args.ids:
        for clause in clauses.index().values():
            print(f"{clause.id:<9} {clause.title}  [{clause.document}]")
        return 0
    for number, clause_id in enumerate(args.ids):
        try:
            clause = clauses.lookup(clause_id)
        except KeyError as error:
            raise UsageError(error.args[0]) from None
        print(("\n" if number else "") + f"normspec {clauses.spec_version()}, spec/{clause.document}\n\n{clause.text}")
    return 0


def _adapters(args) -> int:
    for adapter_id in BUILTIN:
        try:
            adapter = load_adapter(adapter_id)
        except UsageError as error:
            print(f"{adapter_id:<20} not available: {error}")
            continue
        devices = ", ".join(f"{d} ({'ok' if r is None else r})" for d, r in adapter.device_status().items())
        print(f"{adapter_id:<20} {adapter.framework_version():<24} ops: {', '.join(adapter.capabilities.ops)}; "
              f"devices: {devices}")
    return 0


def _check(args, extra: list, quiet: bool = False) -> int:
    load_adapter(args.target)  # a usage error here is reported before pytest starts
    suite = files("normspec.tests").joinpath("conformance")
    report = args.report or tempfile.mkdtemp(prefix="normspec-report-")
    command = [sys.executable, "-m", "pytest", str(suite), "-p", "normspec.pytest_plugin", "-c", os.devnull,
               "--rootdir", os.getcwd(), "-p", "no:cacheprovider", "--import-mode=importlib",
               "--adapter", args.target, "--normspec-profile", args.profile, "-q", "-rfE", "--tb=short",
               "--call-timeout", str(args.call_timeout), "--normspec-report", report,
               # The tests run in a pytest-xdist worker, so an implementation that kills the
               # process (abort, segfault) or hangs in native code (pytest-timeout) fails the
               # test it was in; a new worker takes the rest and the report stays complete.
               # Not --dist loadgroup: after a worker crash it waits for the dead worker forever
               # (pytest-xdist 3.8); the Flax adapters' executables on disk are shared by the workers instead.
               "-p", "xdist", "-n", str(args.workers), "--dist", "load", "--max-worker-restart", "1000",
               "-p", "timeout", "--timeout", str(args.test_timeout), "--timeout-method", "thread"]
    for flag, value in (("--ops", args.ops), ("--dtypes", args.dtypes), ("--devices", args.devices),
                        ("--examples", args.examples), ("--spec-version", args.spec_version)):
        if value is not None:
            command += [flag, str(value)]
    for path in args.expectations or []:
        command += ["--expectations", path]
    if args.report:
        command += [f"--junitxml={os.path.join(args.report, 'junit.xml')}"]
    # A third-party target is importable from the working directory, as with `python -m`.
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(),
                                                                            os.environ.get("PYTHONPATH")])))
    if args.workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        # Workers that each start one thread per core oversubscribe the machine: on 2 cores,
        # `--workers 2` ran torch's calls 14 times slower and the check 1.7 times slower than one worker.
        environment["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.workers))
    if args.workers > 1:
        # JAX claims 75% of a GPU's memory per process unless told not to: a second worker would
        # find the GPU full. Allocating on demand changes no result.
        environment.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    completed = subprocess.run(command + extra, env=environment, stdout=subprocess.DEVNULL if quiet else None,
                               stderr=subprocess.DEVNULL if quiet else None)
    if completed.returncode not in (0, 1, 5):
        return 2
    ran = _results_that_ran(os.path.join(report, "report.json"))
    if completed.returncode == 5 or ran == 0:
        print("normspec check: no test applies to this selection (every test was skipped or none was "
              "collected); check --ops/--dtypes/--devices against the adapter's capabilities", file=sys.stderr)
        return 2
    return completed.returncode


def _results_that_ran(path: str) -> int:
    """How many results in report.json passed, failed or failed as expected (not skipped)."""
    try:
        with open(path, encoding="utf-8") as stream:
            results = json.load(stream)["results"]
    except (OSError, ValueError, KeyError):
        return 0
    return sum(result["status"] != "not-run" for result in results)


def _bench(args) -> int:
    """Per adapter: wall time of the check, examples per second, time per call inside the
    implementation (the floor), suite time per example over that floor, JIT cache hit rate."""
    import time
    header = (f"{'adapter':<20} {'wall s':>7} {'examples':>8} {'ex/s':>6} {'calls':>7} {'call us':>8} "
              f"{'suite/ex us':>11} {'ratio':>6} {'cache hit':>9} {'from disk':>9}  result")
    print(header)
    for target in args.targets:
        with tempfile.TemporaryDirectory() as directory:
            check = argparse.Namespace(target=target, ops=args.ops, dtypes=args.dtypes, devices="cpu",
                                       profile=args.profile, examples=args.examples, expectations=None,
                                       report=directory, spec_version=None, workers=args.workers, call_timeout=60.0,
                                       test_timeout=900.0)
            start = time.perf_counter()
            status = _check(check, [], quiet=not args.verbose)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normspec", description="The normalization-layer specification and "
                                     "its conformance suite.")
    parser.add_argument("--version", action="version", version=f"normspec {__version__} (spec "
                        f"{clauses.spec_version()})")
    commands = parser.add_subparsers(dest="command", required=True)
    spec = commands.add_parser("spec", help="print clauses of the spec")
    spec.add_argument("ids", nargs="*", metavar="ID", help="clause IDs to print, e.g. NUM-1.1")
    spec.add_argument("--list", action="store_true", help="list every clause ID with its title")
    spec.add_argument("--version", action="store_true", help="print the spec version")
    commands.add_parser("adapters", help="list the built-in adapters and whether they load here")
    check = commands.add_parser("check", help="run the conformance suite against an adapter",
                                epilog="Arguments after -- go to pytest unchanged.")
    check.add_argument("target", metavar="TARGET", help=f"built-in adapter ({', '.join(BUILTIN)}) or "
                       "package.module:attr")
    check.add_argument("--ops", help=f"comma-separated subset of {','.join(OPS)}")
    check.add_argument("--dtypes", help=f"comma-separated subset of {','.join(DTYPES)}")
    check.add_argument("--devices", help="comma-separated subset of cpu,cuda (default both; absent ones "
                       "are reported as not run)")
    check.add_argument("--profile", default="ci", choices=("ci", "dev", "thorough"),
                       help="Hypothesis profile: ci (derandomized, default), dev, thorough")
    check.add_argument("--examples", type=int, help="Hypothesis examples per property")
    check.add_argument("--expectations", action="append", metavar="FILE",
                       help="an expectations file (TOML) for this adapter (repeatable)")
    check.add_argument("--report", metavar="DIR", help="write report.json, summary.md and junit.xml to DIR")
    check.add_argument("--spec-version", help="fail with exit 2 unless the bundled spec has this version")
    check.add_argument("--workers", type=int, default=1, help="pytest-xdist worker processes (default 1)")
    check.add_argument("--call-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="fail a call into the implementation that takes longer (default 60)")
    check.add_argument("--test-timeout", type=float, default=900.0, metavar="SECONDS",
                       help="end a test (and its worker) that takes longer, e.g. a hang in native code "
                       "(default 900)")
    bench = commands.add_parser("bench", help="time the conformance check per adapter (see docs/benchmarks.md)")
    bench.add_argument("targets", nargs="+", metavar="TARGET", help="adapters to time")
    bench.add_argument("--ops", help="comma-separated subset of ops")
    bench.add_argument("--dtypes", help="comma-separated subset of dtypes")
    bench.add_argument("--profile", default="ci", choices=("ci", "dev", "thorough"))
    bench.add_argument("--examples", type=int, help="Hypothesis examples per property")
    bench.add_argument("--workers", type=int, default=1,
                       help="pytest-xdist worker processes per check (default 1); suite/ex counts them all")
    bench.add_argument("--slowest", type=int, default=0, metavar="N",
                       help="after each adapter, its N slowest tests with their examples (and JIT compilations)")
    bench.add_argument("--verbose", action="store_true", help="show the checks' own output")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.getcwd() not in sys.path:  # third-party targets resolve from the working directory
        sys.path.insert(0, os.getcwd())
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    args = _parser().parse_args(argv)
    try:
        if args.command == "spec":
            return _spec(args)
        if args.command == "adapters":
            return _adapters(args)
        if args.command == "bench":
            return _bench(args)
        return _check(args, extra)
    except UsageError as error:
        print(f"normspec: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `normspec spec --list | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
