"""Every normative clause is cited by a conformance test or listed in normspec.untested.UNTESTED
with the reason; the citation scan (normspec.citations) reads what a failure can report."""
import numpy as np
import pytest

from normspec import citations, clauses, reference, untested
from normspec.errors import ConfigurationError


def test_every_clause_is_cited_or_listed_as_untested():
    problems = untested.problems()
    assert not problems, "\n".join(problems)


def test_untested_entries_give_a_reason():
    for clause_id, entry in untested.rows():
        assert entry.kind in untested.KINDS, clause_id
        assert len(entry.reason) > 20, clause_id


def test_the_scan_reads_markers_and_clause_arguments_not_docstrings():
    source = '''
"""Module docstring citing GEN-1."""
import pytest

@pytest.mark.clauses("NUM-1.1", "BN-2")
def test_a(adapter):
    """Docstring citing ERR-2."""
    run_case(adapter, case, clause="NUM-1.4")  # a comment citing GEN-5
    Context().fail("BN-5.2", "x", "y")
    text = "not a clause: NUM-1.3 inside a sentence"
'''
    cited = citations.scan_source(source, "test_x.py")
    assert set(cited) == {"NUM-1.1", "BN-2", "NUM-1.4", "BN-5.2"}
    assert cited["NUM-1.4"] == {"test_x.py::test_a"}


def test_cited_clauses_exist():
    assert set(citations.cited_clauses()) <= set(clauses.index())


@pytest.mark.parametrize("missing", ["running_mean", "running_var", "both"])
def test_reference_rejects_evaluation_without_running_statistics(missing):
    """ERR-1.8 is not observable through the adapter interface (UNTESTED); the reference rejects it."""
    x = np.linspace(-1, 1, 12).reshape(2, 6)
    state = {"running_mean": np.zeros(6), "running_var": np.ones(6)}
    if missing == "both":
        state = {"running_mean": None, "running_var": None}
    else:
        state[missing] = None
    with pytest.raises(ConfigurationError, match=r"ERR-1\.(8|2)"):
        reference.batch_norm(x, None, None, state["running_mean"], state["running_var"], training=False, eps=1e-5)


def test_summary_shows_untested_rows():
    from types import SimpleNamespace
    from normspec import report

    class _Adapter:
        id = "fake"

        def framework_version(self):
            return "fake 1.0"

        def configuration(self):
            return {}

    state = SimpleNamespace(profile="ci", adapters=[_Adapter()], device_notes={}, results=[
        {"adapter": "fake", "op": "layer_norm", "status": "pass", "failed_clause": None, "clauses": ["NUM-1.1"],
         "nodeid": "t"}])
    text = report.summary_markdown(state)
    for clause_id, _ in untested.rows():
        assert f"| {clause_id} |" in text and "untested" in text
