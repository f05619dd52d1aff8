"""python -m normspec.zoo: the mutant zoo's commands.

    python -m normspec.zoo list                      every mutant, the clause it violates, its ops
    python -m normspec.zoo kill [--jobs N]           the ci profile on every mutant: kill matrix
    python -m normspec.zoo false-alarms [--seeds 20] [--profile thorough]
                                                     correct implementations (and built-in
                                                     adapters) under N seeds

Exit status: 0 when every mutant is killed citing a declared clause, except those
marked as documented suite gaps, which survive (kill), or when no correct
implementation fails (false-alarms); 1 otherwise; 2 for a usage error.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

from normspec import clauses as spec_clauses
from normspec.adapters import BUILTIN

CORRECT_TARGETS = {
    "numpy": "normspec.adapters.numpy_reference:NumpyReferenceAdapter",
    "zoo-twopass": "normspec.zoo.correct:TwoPassKernel",
    "zoo-kahan": "normspec.zoo.correct:KahanKernel",
    "zoo-fused": "normspec.zoo.correct:FusedKernel",
    "zoo-lerp-update": "normspec.zoo.correct:LerpUpdateKernel",
    "zoo-streaming-scaler": "normspec.zoo.scalers:StreamingScalerKernel",
    "zoo-sync-merge": "normspec.zoo.data_parallel:MergingSyncKernel",
    # correct by the spec's notes, flagged by the suite (see normspec.zoo.correct):
    "zoo-plain-twopass": "normspec.zoo.correct:PlainTwoPassKernel",
    "zoo-welford": "normspec.zoo.correct:WelfordKernel",
}
DEFAULT_CORRECT = ("numpy", "zoo-twopass", "zoo-kahan", "zoo-streaming-scaler", "zoo-sync-merge")
# The sweep also takes the built-in adapters: a failure their expectations file lists is expected
# (a recorded disagreement of the framework), any other is unexpected.
SWEEP_TARGETS = {**CORRECT_TARGETS, **BUILTIN}


def _clause_order(clause: str):
    order = list(spec_clauses.index())
    return (order.index(clause) if clause in order else len(order), clause)


def _list(args) -> int:
    from normspec.zoo import MUTANTS
    for cls in MUTANTS:
        summary = " ".join((cls.__doc__ or "").split())
        print(f"{cls.id:<44} {cls.violates:<8} {','.join(cls.capabilities.ops):<26} {summary}")
    print(f"\n{len(MUTANTS)} mutants")
    return 0


def print_kill_matrix(outcomes: list, seconds: float, out=sys.stdout) -> None:
    clauses = sorted({o["clause"] for o in outcomes if o["clause"]}, key=_clause_order)
    width = max(len(o["mutant"]) for o in outcomes)
    head = f"{'mutant':<{width}}  {'violates':<8} | " + " ".join(f"{c:^7}" for c in clauses)
    head += " | examples  in test  tests    time  result"
    print(head, file=out)
    print("-" * len(head), file=out)
    for o in outcomes:
        cells = " ".join(f"{'X' if c == o['clause'] else ('.' if c in o['caught_by'] else ' '):^7}" for c in clauses)
        print(f"{o['mutant']:<{width}}  {o['violates']:<8} | {cells} | {o['examples']:>8} {o['examples_in_test']:>8} "
              f"{o['tests']:>6} {o['seconds']:>6.1f}s  {o['status']}", file=out)
    print("\nX: the clause the failure cited; .: another clause declared acceptable for the mutant.", file=out)
    print("examples: Hypothesis examples (executions of the test body) from the start of the mutant's run,\n"
          "  in suite order, to its first failing example inclusive (a test without Hypothesis counts 1);\n"
          "  in test: of which in the failing test; tests: tests run, the failing one included.", file=out)
    bad = [o for o in outcomes if o["status"] not in ("killed", "gap")]
    stale = [o for o in outcomes if o["gap"] and o["status"] == "killed"]
    gaps = [o for o in outcomes if o["status"] == "gap"]
    if gaps:
        print("\nSurvivors the suite cannot kill yet (documented gaps, each with the change that would kill it):",
              file=out)
        for o in gaps:
            print(f"  {o['mutant']} ({o['violates']}): {o['gap']}", file=out)
    for o in stale:
        print(f"\n!! {o['mutant']} is marked as a suite gap but was killed ({o['clause']}): remove its `gap`",
              file=out)
    for o in bad:
        print(f"\n!! {o['mutant']}: {o['status'].upper()}", file=out)
        if o["status"] == "wrong-clause":
            print(f"   cited {o['clause']}, declared {', '.join(o['caught_by'])}; test {o['test']}", file=out)
        if o["confirmation"] and o["confirmation"] != "passes":
            print(f"   {o['confirmation']}", file=out)
        if o["message"]:
            print("   " + "\n   ".join(o["message"].splitlines()[:8]), file=out)
    killed = sum(o["status"] == "killed" for o in outcomes)
    counts = defaultdict(int)
    for o in outcomes:
        counts[o["status"]] += 1
    examples = sorted(o["examples"] for o in outcomes if o["status"] == "killed")
    print(f"\nKill rate: {killed}/{len(outcomes)} = {100 * killed / len(outcomes):.1f}% "
          f"killed citing a declared clause "
          f"({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))})", file=out)
    if gaps or stale:
        ungapped = [o for o in outcomes if not o["gap"]]
        print(f"  without the documented gaps: {sum(o['status'] == 'killed' for o in ungapped)}/{len(ungapped)}",
              file=out)
    if examples:
        print(f"Examples needed: median {examples[len(examples) // 2]}, max {examples[-1]}, "
              f"total {sum(examples)}", file=out)
    print(f"Clauses that killed: {len(clauses)} ({', '.join(clauses)}); violated clauses covered: "
          f"{len({o['violates'] for o in outcomes})}", file=out)
    print(f"Wall time: {seconds:.1f} s; CPU time of the mutants' runs: {sum(o['cpu_seconds'] for o in outcomes):.1f} s "
          f"(sum of their wall times {sum(o['seconds'] for o in outcomes):.1f} s; the shared confirmations "
          f"not included)", file=out)


def _kill(args) -> int:
    from normspec.zoo import runner
    started = time.perf_counter()
    outcomes = runner.kill(args.only or None, jobs=args.jobs, maxfail=args.maxfail, confirm=not args.no_confirm,
                           shrink=args.shrink)
    seconds = time.perf_counter() - started
    print_kill_matrix(outcomes, seconds)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"seconds": seconds, "outcomes": outcomes}, handle, indent=2)
    return 0 if all(o["status"] == ("gap" if o["gap"] else "killed") for o in outcomes) else 1


def _false_alarms(args) -> int:
    from normspec.zoo import runner
    names = args.implementations.split(",") if args.implementations else list(DEFAULT_CORRECT)
    unknown = [n for n in names if n not in SWEEP_TARGETS]
    if unknown:
        print(f"unknown implementation(s) {unknown}; choose from {', '.join(SWEEP_TARGETS)}", file=sys.stderr)
        return 2
    if args.profile == "ci":
        print("the ci profile is derandomized: every seed gives the same examples; use --profile dev or thorough",
              file=sys.stderr)
        return 2
    options = []
    for flag, value in (("--ops", args.ops), ("--dtypes", args.dtypes), ("--examples", args.examples)):
        if value is not None:
            options += [flag, str(value)]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(f"false-alarm sweep: {', '.join(names)}; profile {args.profile}"
          f"{f' with {args.examples} examples' if args.examples else ''}; seeds {seeds.start}..{seeds.stop - 1}",
          flush=True)

    def report(result):
        expected = result["counts"].get("expected-failure", 0)
        stale = result["counts"].get("expectation-not-reproduced", 0)
        print(f"seed {result['seed']:>4}: {result['counts'].get('pass', 0)} pass, {len(result['failures'])} fail, "
              + (f"{expected} expected failures, " if expected else "")
              + (f"{stale} listed but passed, " if stale else "")
              + 
              f"{result['examples']} examples, {result['seconds']:.0f} s in sessions"
              + (f"  (pytest exit {result['exit_code']})" if result["exit_code"] not in (0, 1) else ""), flush=True)
        if result["output"]:
            print("  " + "\n  ".join(result["output"].splitlines()[-10:]), flush=True)
        for failure in result["failures"]:  # now, so that a run cut short still shows them
            print("  " + "\n  ".join(failure["message"].splitlines()), flush=True)

    started, finished = time.perf_counter(), []

    def on_result(result):
        finished.append(result)
        report(result)

    interrupted = False
    try:
        runner.false_alarms([SWEEP_TARGETS[n] for n in names], seeds, profile=args.profile, jobs=args.jobs,
                            options=options, workdir=args.workdir, on_result=on_result)
    except KeyboardInterrupt:
        interrupted = True
        print(f"\ninterrupted: {len(finished)} of {len(seeds)} seeds finished; the figures below are theirs",
              flush=True)
    code = _sweep_summary(sorted(finished, key=lambda r: r["seed"]), names, args, time.perf_counter() - started)
    return 130 if interrupted else code


def _sweep_summary(results: list, names: list, args, seconds: float) -> int:
    """Print (and with --json, write) the sweep's figures; the exit status."""
    total = defaultdict(int)
    groups = defaultdict(list)
    for result in results:
        for status, count in result["counts"].items():
            total[status] += count
        for f in result["failures"]:
            groups[(f["adapter"], f["test"], f["op"], f["dtype"], f["clause"])].append(f)
    failures = sum(len(v) for v in groups.values())
    errors = sum(r["exit_code"] not in (0, 1) for r in results)
    print(f"\nUnexpected failures: {failures} over {len(results)} seeds x {len(names)} implementations "
          f"({total['pass']} test runs passed, {total['expected-failure']} failed as their expectations file lists, "
          f"{total['expectation-not-reproduced']} listed there passed, {total['not-run']} not run); "
          f"sessions with errors: {errors}")
    for (adapter, test, op, dtype, clause), items in sorted(groups.items(), key=lambda kv: str(kv[0])):
        print(f"\n- {adapter} {test} {op} {dtype}: cites {clause}; seeds {sorted({f['seed'] for f in items})}")
        # whole: the reproduction ends the message (large arrays are in saved files, not inline)
        print("    " + "\n    ".join(items[0]["message"].splitlines()))
    print(f"\nWall time: {seconds:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"seconds": seconds, "implementations": names, "profile": args.profile, "results": results},
                      handle, indent=2)
    return 0 if failures == 0 and errors == 0 else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m normspec.zoo", description="normspec's mutant zoo.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the mutants")
    kill = commands.add_parser("kill", help="run the ci profile on every mutant and print the kill matrix")
    kill.add_argument("--only", action="append", metavar="NAME", help="this mutant only (repeatable)")
    kill.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    kill.add_argument("--maxfail", type=int, default=1, help="stop a mutant's run after this many failing tests")
    kill.add_argument("--no-confirm", action="store_true",
                      help="skip re-running the killing test on the correct base kernel")
    kill.add_argument("--shrink", action="store_true",
                      help="let Hypothesis shrink each failure to a minimal example (slower; the same kills)")
    kill.add_argument("--json", metavar="PATH", help="also write the outcomes as JSON")
    sweep = commands.add_parser("false-alarms", help="run correct implementations under many Hypothesis seeds")
    sweep.add_argument("--seeds", type=int, default=20, help="number of seeds (default 20)")
    sweep.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    sweep.add_argument("--profile", default="thorough", choices=("dev", "thorough", "ci"),
                       help="Hypothesis profile (default thorough; ci is derandomized and refused)")
    sweep.add_argument("--examples", type=int, default=None, help="examples per test (overrides the profile)")
    sweep.add_argument("--implementations", metavar="IDS",
                       help=f"comma-separated, from {', '.join(SWEEP_TARGETS)} (default {','.join(DEFAULT_CORRECT)})")
    sweep.add_argument("--ops", help="comma-separated ops (default all)")
    sweep.add_argument("--dtypes", help="comma-separated dtypes (default all)")
    sweep.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    sweep.add_argument("--workdir", default="normspec-zoo-false-alarms", metavar="DIR",
                       help="pytest root and home of saved failing cases (default ./normspec-zoo-false-alarms)")
    sweep.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"list": _list, "kill": _kill, "false-alarms": _false_alarms}[args.command](args)
    except KeyboardInterrupt:  # false-alarms prints what finished; kill has no partial matrix
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
