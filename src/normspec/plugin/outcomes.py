"""A test's outcome once the expectations files are applied: a listed failure citing the
listed clause is an expected failure, a listed test that passes is a stale expectation
(unless intermittent), and any other failure stays a failure."""
from __future__ import annotations

from normspec.compare import NonConformance


def nonconformance_of(excinfo) -> NonConformance | None:
    """The NonConformance behind a failure (Hypothesis may wrap several in a group)."""
    error = excinfo.value if excinfo else None
    while error is not None:
        if isinstance(error, NonConformance):
            return error
        if not isinstance(error, BaseExceptionGroup):
            return None
        error = next((e for e in error.exceptions if isinstance(e, (NonConformance, BaseExceptionGroup))), None)
    return None


def apply_expectations(rep, matching: list, cited: str | None):
    """Rewrite the call-phase report `rep` by the expectations entries `matching` that list
    its test, for a failure citing `cited`; returns the entry that applied (or None) and the
    source of a stale entry (or None)."""
    # Several entries may list one test (different causes in different configurations): the
    # one citing the failure's clause applies.
    entry = next((e for e in matching if e.clause == cited), matching[0] if matching else None)
    stale = None  # the entry that listed this test, which passed
    if entry is None or rep.when != "call":
        return entry, stale
    if rep.failed and cited == entry.clause:
        rep.outcome, rep.wasxfail = "skipped", f"expected failure {entry.clause}: {entry.reason} ({entry.source})"
    elif rep.failed:
        rep.sections.append(("normspec", f"{entry.source} expects clause {entry.clause}, "
                                         f"but this failure cites {cited or 'no clause'}"))
    elif rep.passed and entry.intermittent:
        rep.sections.append(("normspec", f"{entry.source} (intermittent) did not fail this time"))
    elif rep.passed:
        stale, rep.outcome = entry.source, "failed"
        rep.longrepr = (f"listed expectation no longer fails: {entry.source} ({entry.clause}: {entry.reason}); "
                        f"remove the entry so the expectations file stays true")
    return entry, stale


def status_of(rep) -> str:
    """The result record's status: pass, fail, expected-failure or not-run."""
    return ("expected-failure" if hasattr(rep, "wasxfail") else "not-run" if rep.skipped
            else "fail" if rep.failed else "pass")
