"""The expectations-file loader (errors that name the file, the finding and the fix; list-valued
filters), the TOML writer it is written with, and the converter from the old format (which
must match exactly the test items, with the clauses, that the old entries matched)."""
from __future__ import annotations

import itertools
import tomllib

import pytest

from normspec import expectations, expectations_convert, toml_emit
from normspec.errors import UsageError

FINDING = '''
[[finding]]
id = "demo-half-stats"
title = "half-precision statistics rounded to the input dtype"
mechanism = "the statistics are rounded to the input dtype before they are applied"
clauses = ["NUM-1.1", "NUM-1.4"]
versions = { cpu = "demo 1.0" }
belongs_to = "framework"
upstream = "not reported"
snippet = "print('y = 1')"
observed = "y = 1"
expected = "0.99 within 0.001 (NUM-1.1)"
matches = [
    { test = "test_forward_matches_reference", op = ["batch_norm", "instance_norm"], dtype = ["float16", "bfloat16"], clause = "NUM-1.1" },
    { test = ["test_exact_statistics", "test_constant_slices"], dtype = "float16", device = "cpu", clause = "NUM-1.4", intermittent = true },
]
'''


def _load(tmp_path, text, **options):
    path = tmp_path / "demo.toml"
    path.write_text(text, encoding="utf-8")
    return expectations.load_file(path, **options)


def test_a_row_matches_every_combination_of_its_listed_values(tmp_path):
    forward, exact = sorted(_load(tmp_path, FINDING, adapter_id="demo"), key=lambda e: e.clause)
    for op, dtype in itertools.product(("batch_norm", "instance_norm"), ("float16", "bfloat16")):
        assert forward.matches("test_forward_matches_reference", {"adapter": "demo", "op": op, "dtype": dtype})
    assert not forward.matches("test_forward_matches_reference", {"adapter": "demo", "op": "layer_norm",
                                                                  "dtype": "float16"})
    assert not forward.matches("test_forward_matches_reference", {"adapter": "other", "op": "batch_norm",
                                                                  "dtype": "float16"})
    assert exact.matches("test_constant_slices", {"adapter": "demo", "dtype": "float16", "device": "cpu"})
    assert not exact.matches("test_constant_slices", {"adapter": "demo", "dtype": "float16"})  # no device given
    assert exact.intermittent and not forward.intermittent
    assert forward.reason == "half-precision statistics rounded to the input dtype"
    assert "demo.toml finding demo-half-stats" in forward.source and forward.finding.id == "demo-half-stats"


def test_rows_that_are_not_intermittent_come_first(tmp_path):
    """The suite judges a pass by the first row listing the item: a pass is tolerated only where
    every row listing it is intermittent."""
    text = FINDING.replace('clause = "NUM-1.1" },', 'clause = "NUM-1.1", intermittent = true },').replace(
        'clause = "NUM-1.4", intermittent = true }', 'clause = "NUM-1.4" }')
    assert [e.intermittent for e in _load(tmp_path, text)] == [False, True]


@pytest.mark.parametrize("change, says", [
    (('[[finding]]', '[[expected_failure]]'), "python -m normspec.expectations_convert"),
    (('id = "demo-half-stats"\n', ''), "missing id"),
    (('upstream = "not reported"', 'upstream = "not reported"\ncolour = "red"'), "unknown key(s) ['colour']"),
    (('clauses = ["NUM-1.1", "NUM-1.4"]', 'clauses = ["NUM-1.1", "FOO-1.1"]'), "'FOO-1.1', which is not a clause"),
    (('clauses = ["NUM-1.1", "NUM-1.4"]', 'clauses = ["NUM-1.1"]'), "clause NUM-1.4 is not one of the finding's"),
    (('op = ["batch_norm", "instance_norm"]', 'op = "batchnorm"'), "op value(s) ['batchnorm'] unknown"),
    (('dtype = "float16", device', 'dtype = 16, device'), "dtype = 16 must be a string or a non-empty list"),
    (('belongs_to = "framework"', 'belongs_to = "torch"'), 'use "framework"'),
    (('upstream = "not reported"', 'upstream = "filed"'), '"matches <URL or owner/repo#N>"'),
    (('versions = { cpu = "demo 1.0" }', 'versions = { gpu = "demo 1.0" }'), 'a "cpu" and/or "cuda" key'),
    (('id = "demo-half-stats"', 'id = "Demo Half"'), "must be a slug"),
    (('observed = "y = 1"', 'observed = "y = 1"\nsnippet_status = "ok"'), '"needs standalone rewrite"'),
    (('clause = "NUM-1.1" }', 'clause = "NUM-1.1", colour = "red" }'), "match 1: unknown key(s) ['colour']"),
])
def test_a_malformed_finding_names_the_file_the_finding_and_the_fix(tmp_path, change, says):
    with pytest.raises(UsageError) as error:
        _load(tmp_path, FINDING.replace(*change))
    assert "demo.toml" in str(error.value) and says in str(error.value)


def test_an_id_used_twice_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="used twice"):
        _load(tmp_path, FINDING + FINDING)


@pytest.mark.parametrize("text", ["plain", "two\nlines", "ends with a quote '\n'", "has ''' inside\n",
                                  'quotes " and \\ backslash', "tab\there\n", "del \x7f char", ""])
def test_toml_emit_reads_back_equal(text):
    table = {"s": text, "flag": True, "list": [text, "x"], "inline": {"cpu": text},
             "rows": [{"test": [text, "t"], "clause": "NUM-1.1", "intermittent": True}]}
    for inline in ((), ("rows",)):
        written = toml_emit.dumps("a header\n\nover lines", "finding", [table], inline=inline)
        assert tomllib.loads(written) == {"finding": [table]}


OLD = '''
[[expected_failure]]
test = "test_forward_matches_reference"
op = "batch_norm"
dtype = "float16"
clause = "NUM-1.1"
reason = "statistics rounded to the input dtype. More text."
version = "demo 1.0"
minimal_input = "import numpy as np\\ny = np.float16(1)"
observed = "1.0"
expected = "0.99"
'''


def _old(**changes) -> str:
    entry = OLD
    for key, value in changes.items():
        entry = entry.replace(f'{key} = "{dict(op="batch_norm", dtype="float16", clause="NUM-1.1")[key]}"',
                              f'{key} = "{value}"')
    return entry


def test_the_converter_merges_one_mechanism_into_one_finding_matching_the_same_items(tmp_path):
    old = (_old() + _old(dtype="bfloat16") + _old(op="instance_norm") + _old(op="instance_norm", dtype="bfloat16")
           + _old(op="layer_norm", clause="NUM-1.4")
           + OLD.replace("statistics rounded", "another mechanism").replace("NUM-1.1", "NUM-1.5")
           .replace('dtype = "float16"\n', 'dtype = "float16"\nintermittent = true\n'))
    (tmp_path / "old.toml").write_text(old)
    text, findings = expectations_convert.convert_text(tmp_path / "old.toml", "demo")
    (tmp_path / "new.toml").write_text(text)
    first, second = expectations.load_findings(tmp_path / "new.toml")
    assert (first.id, first.title) == ("demo-num-1-1-statistics-rounded-input-dtype", "statistics rounded to the input dtype")
    assert [(m.filters, m.clause) for m in first.matches] == [
        ({"test": ("test_forward_matches_reference",), "op": ("batch_norm", "instance_norm"),
          "dtype": ("float16", "bfloat16")}, "NUM-1.1"),
        ({"test": ("test_forward_matches_reference",), "op": ("layer_norm",), "dtype": ("float16",)}, "NUM-1.4")]
    assert first.snippet == "import numpy as np\ny = np.float16(1)\nprint(y)\n" and first.snippet_status is None
    assert first.versions == {"cpu": "demo 1.0"} and first.upstream == "not reported"
    assert second.intermittent and second.clauses == ("NUM-1.5",)


def test_the_converter_marks_a_snippet_that_imports_normspec(tmp_path):
    (tmp_path / "old.toml").write_text(OLD.replace("import numpy as np", "from normspec.cases import Case"))
    _, (finding,) = expectations_convert.convert_text(tmp_path / "old.toml", "demo")
    assert finding["snippet_status"] == expectations.NEEDS_REWRITE
