"""The normative clauses that no conformance test cites, each with the reason (UNTESTED), and the
check that every other clause is cited (tests/test_untested.py; the summary matrix and the site
show these rows as "untested").

A reason is "definitional" (the clause defines terms, or states that its subclauses apply, each of
which is cited) or "not observable" (through the adapter interface: the suite cannot see it).
"""
from __future__ import annotations

from dataclasses import dataclass

from normspec import citations, clauses

DEFINITIONAL, NOT_OBSERVABLE = "definitional", "not observable"
KINDS = (DEFINITIONAL, NOT_OBSERVABLE)


@dataclass(frozen=True)
class Untested:
    kind: str  # one of KINDS
    reason: str


def _umbrella(first: str, last: str) -> Untested:
    return Untested(DEFINITIONAL, f"requires what its subclauses {first} to {last} require; each of them is cited")


UNTESTED = {
    "GEN-1": Untested(DEFINITIONAL, "scope and notation: defines the terms the other clauses use"),
    "GEN-5": Untested(DEFINITIONAL, "defines conformance and what a conformance claim or report cites; the suite "
                                    "applies it by judging every other clause"),
    "NORM-1": Untested(DEFINITIONAL, "defines the exact mean of a slice; every differential test compares with the "
                                     "reference's mean through the bound of NUM-1.1, which a wrong mean violates"),
    "NUM-1": _umbrella("NUM-1.1", "NUM-1.5"),
    "NUM-1.2": Untested(DEFINITIONAL, "defines the conditioning kappa that the bounds of NUM-1.1 and NUM-1.5 use"),
    "NUM-2": _umbrella("NUM-2.1", "NUM-2.2"),
    "NUM-3": _umbrella("NUM-3.1", "NUM-3.3"),
    "NUM-4": _umbrella("NUM-4.1", "NUM-4.3"),
    "BN-4": _umbrella("BN-4.1", "BN-4.4"),
    "BN-5": _umbrella("BN-5.1", "BN-5.2"),
    "GRAD-6": _umbrella("GRAD-6.1", "GRAD-6.3"),
    "GRAD-7": _umbrella("GRAD-7.1", "GRAD-7.2"),
    "GRAD-8": _umbrella("GRAD-8.1", "GRAD-8.2"),
    "SCALE-1": Untested(DEFINITIONAL, "defines the data of the fitted scalers (samples, features, dtypes) that the "
                                      "scaler tests draw; the reference rejects other data (tests/test_reference_scalers.py)"),
    "SCALE-7": _umbrella("SCALE-7.1", "SCALE-7.3"),
    "ERR-1.8": Untested(NOT_OBSERVABLE, "an adapter's layer always holds running statistics (a fresh one those of "
                                        "BN-4.3), so the interface cannot make an evaluation call without them; the "
                                        "functional forms that can omit them are not part of the interface. The "
                                        "reference rejects such a call (tests/test_untested.py)"),
}


def cited() -> dict:
    """{clause ID: the tests citing it} (normspec.citations)."""
    return citations.cited_clauses()


def problems() -> list:
    """What is wrong with the table: a clause neither cited nor listed, a listed clause that a test
    now cites (remove it), a listed ID the spec does not define, an unknown kind."""
    index, tested = clauses.index(), cited()
    found = [f"{clause_id}: no test cites it and UNTESTED does not list it; add a test that cites it "
             f"(@pytest.mark.clauses) or an UNTESTED entry with the reason"
             for clause_id in index if clause_id not in tested and clause_id not in UNTESTED]
    found += [f"{clause_id}: listed as untested, but {', '.join(tested[clause_id])} cite(s) it; remove the entry"
              for clause_id in UNTESTED if clause_id in tested]
    found += [f"{clause_id}: listed as untested, but the spec defines no such clause"
              for clause_id in UNTESTED if clause_id not in index]
    found += [f"{clause_id}: kind {entry.kind!r} is not one of {', '.join(KINDS)}"
              for clause_id, entry in UNTESTED.items() if entry.kind not in KINDS]
    return found


def rows() -> list:
    """(clause ID, Untested) for every listed clause the spec defines, in the spec's order."""
    return [(clause_id, UNTESTED[clause_id]) for clause_id in clauses.index() if clause_id in UNTESTED]
