"""The `normspec` command: read the spec, list adapters, run the conformance check.

    normspec spec --list            every clause ID with its title
    normspec spec NUM-1.1 BN-4      the text of clauses
    normspec adapters               built-in adapters and whether they load here
    normspec check TARGET [...]     the conformance suite against an adapter
    normspec bench TARGET [...]     how long the check takes, against the raw call time
    normspec findings ADAPTER       an adapter's known non-conformances as Markdown bug reports
    normspec expectations update ADAPTER   run the check; write ADAPTER.proposed.toml to review
    normspec site build DIR [--reports R ...]   the rendered spec, its conformance matrix and plots
    normspec site check DIR         every clause anchor and internal link of a built site
    normspec accuracy TARGET [...]  error over the NUM-1.1 bound against kappa and n, as PNG figures

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

from normspec import __version__, bench, clauses
from normspec.adapters import BUILTIN, load_adapter
from normspec.dtypes import DTYPES
from normspec.registry import ALL_OP_NAMES, OP_NAMES
from normspec.errors import UsageError


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


def _adapter_line(adapter_id: str) -> str:
    """One line of `normspec adapters`: the adapter's version, ops and devices, or why it does not load."""
    try:
        adapter = load_adapter(adapter_id)
    except UsageError as error:
        return f"{adapter_id:<20} not available: {error}"
    devices = ", ".join(f"{d} ({'ok' if r is None else r})" for d, r in adapter.device_status().items())
    caps = adapter.capabilities  # the layers, the fitted scalers, the scalers applied with given statistics
    ops = ", ".join(caps.ops + caps.scalers + tuple(f"{op} (given statistics)" for op in caps.given_statistics
                                                    if op not in caps.scalers))
    if not caps.same_dtype:  # a mixed-precision context (torch-autocast): say which calls it gets
        ops += " (mixed precision only: " + ", ".join(f"{d} with {p} parameters" for d, p in caps.mixed_precision) + ")"
    return f"{adapter_id:<20} {adapter.framework_version():<24} ops: {ops}; devices: {devices}"


def _adapters(args) -> int:
    """Each adapter is loaded in a process of its own, as `normspec check` loads it: frameworks read
    settings once at import (Keras its backend), so one process cannot hold them all."""
    if args.only:
        print(_adapter_line(args.only))
        return 0
    from concurrent.futures import ThreadPoolExecutor

    def line(adapter_id):
        completed = subprocess.run([sys.executable, "-m", "normspec.cli", "adapters", "--only", adapter_id],
                                   capture_output=True, text=True)
        text = completed.stdout.strip()
        return text if completed.returncode == 0 and text else (
            f"{adapter_id:<20} not available: loading it ended with exit status {completed.returncode}: "
            f"{(completed.stderr.strip().splitlines() or [''])[-1]}")

    with ThreadPoolExecutor(max_workers=CORES) as pool:
        for text in pool.map(line, BUILTIN):
            print(text)
    return 0


CORES = os.cpu_count() or 1


def _check(args, extra: list, quiet: bool = False) -> int:
    adapter = load_adapter(args.target)  # a usage error here is reported before pytest starts
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
        # Workers that each start one thread per core oversubscribe the machine and run slower
        # than one worker (docs/benchmarks.md, "Threads per worker").
        environment["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.workers))
    if args.workers > 1:
        # JAX claims 75% of a GPU's memory per process unless told not to: a second worker would
        # find the GPU full. Allocating on demand changes no result.
        environment.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    environment.update(adapter.environment)  # what its framework reads at import (KERAS_BACKEND)
    completed = subprocess.run(command + extra, env=environment, stdout=subprocess.DEVNULL if quiet else None,
                               stderr=subprocess.DEVNULL if quiet else None)
    return verdict(completed.returncode, _statuses(os.path.join(report, "report.json")))


PYTEST_INTERRUPTED, PYTEST_NO_TESTS = 2, 5


def verdict(returncode: int, statuses: list) -> int:
    """The exit status of `normspec check` from pytest's and the report's: a non-conformance is
    1 whatever stopped the run (`-- -x` under pytest-xdist ends it as "interrupted"), a run
    in which nothing applied or pytest itself failed is 2, else pytest's 0 or 1."""
    if "fail" in statuses and returncode in (0, 1, PYTEST_INTERRUPTED):
        return 1
    if returncode not in (0, 1, PYTEST_NO_TESTS):
        return 2
    if returncode == PYTEST_NO_TESTS or all(status == "not-run" for status in statuses):
        print("normspec check: no test applies to this selection (every test was skipped or none was "
              "collected); check --ops/--dtypes/--devices against the adapter's capabilities", file=sys.stderr)
        return 2
    return returncode


def _statuses(path: str) -> list:
    """The status of every result in report.json (none if it is missing or unreadable)."""
    try:
        with open(path, encoding="utf-8") as stream:
            return [result["status"] for result in json.load(stream)["results"]]
    except (OSError, ValueError, KeyError):
        return []


def _findings(args) -> int:
    """The findings of a built-in adapter's expectations file (or of a .toml file) as bug reports."""
    from normspec import expectations, findings
    if args.adapter.endswith(".toml"):
        name, loaded = os.path.basename(args.adapter)[:-len(".toml")], expectations.load_findings(args.adapter)
    elif args.adapter in BUILTIN:
        name, loaded = args.adapter, expectations.builtin_findings(args.adapter)
    else:
        raise UsageError(f"unknown adapter {args.adapter!r}: use one of {', '.join(BUILTIN)} or an expectations "
                         f"file (FILE.toml)")
    try:
        chosen = findings.select(loaded, args.id)
    except KeyError as error:
        raise UsageError(f"{name}: {error.args[0]}") from None
    render = findings.render_json if args.format == "json" else findings.render_markdown
    sys.stdout.write(render(name, chosen))
    return 0


def _site(args) -> int:
    """Build the site (then check it), or check a built one (normspec.site)."""
    from normspec.site import build, check
    if args.action == "build":
        accuracy_dir = args.accuracy
        with tempfile.TemporaryDirectory(prefix="normspec-accuracy-") as drawn:
            if not args.no_accuracy and accuracy_dir is None:
                accuracy_dir = _draw_accuracy(list(_comparison_targets()), ("batch_norm",), ("float32",), drawn,
                                              quiet=True)
            folders = build.build(args.dir, report_paths=args.reports or (), all_versions=args.all_versions,
                                  accuracy_dir=accuracy_dir, repository=args.git)
        for folder in folders:
            print(f"built {folder}")
        if args.no_check:
            return 0
    problems = check.check(args.dir)
    for problem in problems:
        print(f"normspec site check: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.dir}: every clause anchor and internal link resolves")
    return 1 if problems else 0


def _comparison_targets():
    from normspec.accuracy_plot import COMPARISON
    return COMPARISON


def _draw_accuracy(targets: list, ops, dtypes, out, device: str = "cpu", quiet: bool = False) -> str:
    """Measure each target (normspec.accuracy) and draw the figures into `out`; returns `out`."""
    from normspec import accuracy, accuracy_plot
    points, labels = [], {}
    for target in targets:
        adapter = load_adapter(target)
        labels[adapter.id] = accuracy_plot.COMPARISON.get(target, accuracy_plot.KNOWN.get(adapter.id, adapter.id))
        measured = accuracy.measure(adapter, ops, dtypes, device)
        if not measured and not quiet:
            print(f"normspec accuracy: {adapter.id} covers none of the ops and dtypes asked for", file=sys.stderr)
        points += measured
    os.makedirs(out, exist_ok=True)
    accuracy.save(points, os.path.join(out, "accuracy.json"))
    for path in accuracy_plot.draw(points, out, labels):
        if not quiet:
            print(f"wrote {path}")
    return out


def _accuracy(args) -> int:
    ops = args.ops.split(",") if args.ops else list(OP_NAMES)
    dtypes = args.dtypes.split(",") if args.dtypes else list(DTYPES)
    unknown = [o for o in ops if o not in OP_NAMES] + [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise UsageError(f"unknown op or dtype {unknown}: ops from {', '.join(OP_NAMES)}, dtypes from {', '.join(DTYPES)}")
    targets = list(args.targets) + ([t for t in _comparison_targets() if t not in args.targets] if args.compare else [])
    _draw_accuracy(targets, ops, dtypes, args.out, args.device)
    return 0


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
    adapters = commands.add_parser("adapters", help="list the built-in adapters and whether they load here")
    adapters.add_argument("--only", metavar="ID", help=argparse.SUPPRESS)  # one adapter, in this process
    check = commands.add_parser("check", help="run the conformance suite against an adapter",
                                epilog="Arguments after -- go to pytest unchanged.")
    check.add_argument("target", metavar="TARGET", help=f"built-in adapter ({', '.join(BUILTIN)}) or "
                       "package.module:attr")
    check.add_argument("--ops", help=f"comma-separated subset of {','.join(ALL_OP_NAMES)}")
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
    check.add_argument("--workers", type=int, default=CORES,
                       help=f"pytest-xdist worker processes (default: this machine's cores, {CORES})")
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
    bench.add_argument("--workers", type=int, default=CORES,
                       help=f"pytest-xdist worker processes per check (default: this machine's cores, {CORES}); "
                       "suite/ex counts them all")
    bench.add_argument("--slowest", type=int, default=0, metavar="N",
                       help="after each adapter, its N slowest tests with their examples (and JIT compilations)")
    bench.add_argument("--verbose", action="store_true", help="show the checks' own output")
    findings = commands.add_parser("findings", help="print an adapter's findings as Markdown bug reports")
    findings.add_argument("adapter", metavar="ADAPTER", help=f"built-in adapter ({', '.join(BUILTIN)}) or an "
                          "expectations file (FILE.toml)")
    findings.add_argument("--id", help="only the finding with this id")
    findings.add_argument("--format", default="markdown", choices=("markdown", "json"))
    expectations = commands.add_parser("expectations", help="keep an adapter's expectations file true")
    actions = expectations.add_subparsers(dest="action", required=True)
    update = actions.add_parser("update", help="run the check and write ADAPTER.proposed.toml: the expectations "
                                "file without the rows that no longer fail, and proposed findings for the failures "
                                "no row lists (it never writes the expectations file itself)",
                                epilog="Arguments after -- go to pytest unchanged.")
    update.add_argument("target", metavar="ADAPTER", help=f"built-in adapter ({', '.join(BUILTIN)}) or "
                        "package.module:attr (with --expectations)")
    update.add_argument("--expectations", metavar="FILE", help="the expectations file to update (default: the "
                        "built-in adapter's)")
    update.add_argument("--output", metavar="PATH", help="where to write (default: ./ADAPTER.proposed.toml)")
    update.add_argument("--ops", help=f"comma-separated subset of {','.join(ALL_OP_NAMES)}")
    update.add_argument("--dtypes", help=f"comma-separated subset of {','.join(DTYPES)}")
    update.add_argument("--devices", help="comma-separated subset of cpu,cuda")
    update.add_argument("--profile", default="ci", choices=("ci", "dev", "thorough"),
                        help="Hypothesis profile (default ci, the one the files are measured with)")
    update.add_argument("--examples", type=int, help="Hypothesis examples per property")
    update.add_argument("--workers", type=int, default=CORES,
                        help=f"pytest-xdist worker processes (default: this machine's cores, {CORES})")
    update.add_argument("--call-timeout", type=float, default=60.0, metavar="SECONDS")
    update.add_argument("--test-timeout", type=float, default=900.0, metavar="SECONDS")
    site = commands.add_parser("site", help="the rendered spec: build it, or check a built one")
    site_actions = site.add_subparsers(dest="action", required=True)
    site_build = site_actions.add_parser(
        "build", help="build the site into DIR/<spec version>/ (DIR/draft/ for unreleased text), then check it",
        description="Builds the spec with mkdocs-material, offline (pip install 'normspec[site]'): each clause's "
        "anchor is its ID, with its history and its conformance; a conformance matrix from report.json files; "
        "accuracy figures.")
    site_build.add_argument("dir", metavar="DIR", help="the site's folder (version folders are added or replaced)")
    site_build.add_argument("--reports", nargs="+", metavar="REPORT",
                            help="report.json files or `normspec check --report` folders for the matrix")
    site_build.add_argument("--all-versions", action="store_true",
                            help="also build every released spec version from the git history")
    site_build.add_argument("--git", metavar="REPO", help="the git checkout whose history --all-versions reads "
                            "(default: the current directory)")
    site_build.add_argument("--accuracy", metavar="DIR", help="take the accuracy figures from DIR (written by "
                            "`normspec accuracy --out DIR`) instead of drawing the default comparison")
    site_build.add_argument("--no-accuracy", action="store_true", help="no accuracy figures")
    site_build.add_argument("--no-check", action="store_true", help="do not check anchors and links afterwards")
    site_check = site_actions.add_parser("check", help="check that every clause ID resolves to its anchor and "
                                         "that no internal link of a built site is broken (exit 1 if not)")
    site_check.add_argument("dir", metavar="DIR")
    accuracy = commands.add_parser("accuracy", help="error over the NUM-1.1 bound against kappa and n (PNG figures)")
    accuracy.add_argument("targets", nargs="+", metavar="TARGET", help="adapters to measure (built-in ID or "
                          "package.module:attr); with several, why.png compares them")
    accuracy.add_argument("--ops", help=f"comma-separated subset of {','.join(OP_NAMES)}")
    accuracy.add_argument("--dtypes", help=f"comma-separated subset of {','.join(DTYPES)}")
    accuracy.add_argument("--out", default="accuracy", metavar="DIR",
                          help="folder for accuracy.json and the figures, e.g. a --report folder (default ./accuracy)")
    accuracy.add_argument("--device", default="cpu", help="device to run on (default cpu)")
    accuracy.add_argument("--compare", action="store_true", help="also measure the reference, the zoo's two-pass, "
                          "Welford and fused kernels and the one-pass mutant, for the comparison figure")
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
            return bench.run(args, _check)
        if args.command == "findings":
            return _findings(args)
        if args.command == "site":
            return _site(args)
        if args.command == "accuracy":
            return _accuracy(args)
        if args.command == "expectations":
            from normspec import expectations_update
            return expectations_update.update(args, extra, check=_check)
        return _check(args, extra)
    except UsageError as error:
        print(f"normspec: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `normspec spec --list | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
