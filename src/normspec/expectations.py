"""Expectations files: the known non-conformances of an adapter, one [[finding]] per mechanism,
each with the test filters it explains (format: adapters/expectations/FORMAT.md)."""
from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from normspec import clauses
from normspec.registry import ALL_OP_NAMES, DEVICES, DTYPES
from normspec.errors import UsageError

# Filters name parameters of the tests: the adapter, op, dtype and device, and the extra
# parameters some tests have (kind, family, value, identity, rank), compared as text.
FILTERS = ("adapter", "op", "dtype", "device", "kind", "family", "value", "identity", "rank")
# A filter whose values are a closed set: a typo there would silently match nothing.
_ALLOWED_VALUES = {"op": ALL_OP_NAMES, "dtype": DTYPES, "device": DEVICES}
_FINDING_TEXT = ("id", "title", "mechanism", "belongs_to", "upstream", "snippet", "observed", "expected")
_FINDING_REQUIRED = (*_FINDING_TEXT, "clauses", "versions", "matches")
_FINDING_OPTIONAL = ("device", "notes", "measured_error", "intermittent", "snippet_status", "observed_rtol")
_MATCH_KEYS = ("test", *FILTERS, "clause", "intermittent")
BELONGS_TO = ("framework", "adapter")
VERSION_KEYS = ("cpu", "cuda")
NOT_REPORTED = "not reported"
NOT_SEARCHED = "not searched"  # the upstream tracker could not be searched when the finding was written
# The converter marks a snippet it could not take from a standalone entry; the snippet test fails on it.
NEEDS_REWRITE = "needs standalone rewrite"
CONVERTER = "python -m normspec.expectations_convert"
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Match:
    """One [[finding.matches]] row: test filters (name -> the values it accepts) and the clause."""
    filters: dict
    clause: str
    intermittent: bool = False


@dataclass(frozen=True)
class Finding:
    """One [[finding]]: a mechanism, its evidence and the test items it explains."""
    id: str
    title: str
    mechanism: str
    clauses: tuple
    versions: dict
    belongs_to: str
    upstream: str
    snippet: str
    observed: str
    expected: str
    matches: tuple
    path: str  # the file it was read from, for messages
    device: str | None = None  # "cuda": the snippet needs a GPU
    notes: str | None = None
    measured_error: str | None = None
    intermittent: bool = False
    snippet_status: str | None = None
    observed_rtol: float | None = None  # numbers of `observed` compared to this relative tolerance; None: verbatim


@dataclass(frozen=True)
class Expectation:
    """What the suite applies to a test item: one match row of a finding."""
    finding: Finding = field(repr=False)
    filters: dict
    clause: str
    intermittent: bool  # the failure does not show in every run (a pass is then no error)
    source: str  # file and finding id (and row), for messages

    @property
    def reason(self) -> str:
        return self.finding.title

    def matches(self, test: str, params: dict) -> bool:
        return test in self.filters["test"] and all(
            params.get(name) in values for name, values in self.filters.items() if name != "test")


def _read(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"expectations file {path}: cannot be read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"expectations file {path}: not valid TOML ({error})") from None
    if "expected_failure" in data:
        raise UsageError(f"expectations file {path}: [[expected_failure]] is the old format, which is no longer "
                         f"read; convert it with `{CONVERTER} {path} NEW.toml`, review NEW.toml and use it "
                         f"(format: adapters/expectations/FORMAT.md)")
    extra = sorted(set(data) - {"finding"})
    if extra:
        raise UsageError(f"expectations file {path}: unknown top-level key(s) {extra}; the file holds only "
                         f"[[finding]] tables (see FORMAT.md)")
    if not isinstance(data.get("finding", []), list):
        raise UsageError(f"expectations file {path}: `finding` must be an array of tables, written [[finding]]")
    return data


def _text_values(value, where: str, name: str) -> tuple:
    """A filter's accepted values: a string or a non-empty list of distinct strings."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise UsageError(f"{where}: {name} = {value!r} must be a string or a non-empty list of strings "
                         f"(compared as text, e.g. {name} = \"-inf\")")
    if len(set(values)) != len(values):
        raise UsageError(f"{where}: {name} = {value!r} lists a value twice; list each once")
    allowed = _ALLOWED_VALUES.get(name)
    unknown = [v for v in values if allowed is not None and v not in allowed]
    if unknown:
        raise UsageError(f"{where}: {name} value(s) {unknown} unknown; choose from {', '.join(allowed)}")
    return tuple(values)


def _boolean(table: dict, key: str, where: str, default: bool = False) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise UsageError(f"{where}: {key} = {value!r} must be true or false")
    return value


def _known_clause(clause_id, where: str, key: str) -> str:
    if not isinstance(clause_id, str) or clause_id not in clauses.index():
        raise UsageError(f"{where}: {key} names {clause_id!r}, which is not a clause of spec "
                         f"{clauses.spec_version()}; `normspec spec --list` lists the clause IDs")
    return clause_id


def _match(row, number: int, finding_clauses: tuple, intermittent: bool, where: str) -> Match:
    where = f"{where}, match {number}"
    if not isinstance(row, dict):
        raise UsageError(f"{where}: a match must be a table, written [[finding.matches]]")
    unknown = sorted(set(row) - set(_MATCH_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {unknown}; a match takes {', '.join(_MATCH_KEYS)}")
    missing = [key for key in ("test", "clause") if key not in row]
    if missing:
        raise UsageError(f"{where}: missing {', '.join(missing)}; every match names its test(s) and the clause "
                         f"their failure must cite")
    clause = _known_clause(row["clause"], where, "clause")
    if clause not in finding_clauses:
        raise UsageError(f"{where}: clause {clause} is not one of the finding's clauses {list(finding_clauses)}; "
                         f"add it to `clauses` or cite one of those")
    filters = {name: _text_values(row[name], where, name) for name in ("test", *FILTERS) if name in row}
    return Match(filters, clause, _boolean(row, "intermittent", where, intermittent))


def _finding(table, number: int, path: Path) -> Finding:
    name = table.get("id") if isinstance(table, dict) and isinstance(table.get("id"), str) else None
    where = f"expectations file {path}, finding {name}" if name else f"expectations file {path}, finding {number}"
    if not isinstance(table, dict):
        raise UsageError(f"{where}: a finding must be a table, written [[finding]]")
    missing = [key for key in _FINDING_REQUIRED if key not in table]
    if missing:
        raise UsageError(f"{where}: missing {', '.join(missing)} (every finding has {', '.join(_FINDING_REQUIRED)}; "
                         f"see FORMAT.md)")
    unknown = sorted(set(table) - set(_FINDING_REQUIRED) - set(_FINDING_OPTIONAL))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {unknown}; a finding takes "
                         f"{', '.join(_FINDING_REQUIRED + _FINDING_OPTIONAL)}")
    for key in (*_FINDING_TEXT, *(k for k in ("device", "notes", "measured_error", "snippet_status") if k in table)):
        if not isinstance(table[key], str) or not table[key].strip():
            raise UsageError(f"{where}: {key} must be a non-empty string")
    if not _ID.match(table["id"]):
        raise UsageError(f"{where}: id {table['id']!r} must be a slug of lower-case letters, digits and single "
                         f"hyphens, e.g. \"torch-half-batch-stats-rounded\"")
    if "\n" in table["title"].strip():
        raise UsageError(f"{where}: title must be one line (a bug report's title); put the rest in mechanism")
    if table["belongs_to"] not in BELONGS_TO:
        raise UsageError(f"{where}: belongs_to = {table['belongs_to']!r}; use \"framework\" (fileable upstream) or "
                         f"\"adapter\" (the adapter's own composition)")
    upstream = table["upstream"]
    if upstream not in (NOT_REPORTED, NOT_SEARCHED) and not re.match(r"^matches \S", upstream):
        raise UsageError(f"{where}: upstream = {upstream!r}; use \"{NOT_REPORTED}\", \"{NOT_SEARCHED}\" or "
                         f"\"matches <URL or owner/repo#N>\"")
    if table.get("device", "cuda") not in ("cpu", "cuda"):
        raise UsageError(f"{where}: device = {table['device']!r}; use \"cuda\" for a snippet that needs a GPU "
                         f"(absent: it runs on a CPU)")
    if table.get("snippet_status", NEEDS_REWRITE) != NEEDS_REWRITE:
        raise UsageError(f"{where}: snippet_status = {table['snippet_status']!r}; the only value is "
                         f"\"{NEEDS_REWRITE}\" (delete the key once the snippet runs standalone)")
    versions = table["versions"]
    if (not isinstance(versions, dict) or not versions or set(versions) - set(VERSION_KEYS)
            or not all(isinstance(v, str) and v.strip() for v in versions.values())):
        raise UsageError(f"{where}: versions = {versions!r} must be a table with a \"cpu\" and/or \"cuda\" key, each "
                         f"naming the build it was observed with, e.g. versions = {{ cpu = \"torch 2.13.0+cpu\" }}")
    rtol = table.get("observed_rtol")
    if rtol is not None and (isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0 < rtol <= 0.01):
        raise UsageError(f"{where}: observed_rtol = {rtol!r} must be a number in (0, 0.01]: the relative difference "
                         f"in the last digits that another machine prints (see FORMAT.md); leave it out for a "
                         f"snippet whose output is the same everywhere")
    cited = table["clauses"]
    if not isinstance(cited, list) or not cited:
        raise UsageError(f"{where}: clauses must be a non-empty list of clause IDs, e.g. clauses = [\"NUM-1.1\"]")
    cited = tuple(_known_clause(c, where, "clauses") for c in cited)
    intermittent = _boolean(table, "intermittent", where)
    rows = table["matches"]
    if not isinstance(rows, list) or not rows:
        raise UsageError(f"{where}: matches must hold at least one [[finding.matches]] table (the tests it explains)")
    matches = tuple(_match(row, n, cited, intermittent, where) for n, row in enumerate(rows, start=1))
    return Finding(id=table["id"], title=table["title"].strip(), mechanism=table["mechanism"], clauses=cited,
                   versions=dict(versions), belongs_to=table["belongs_to"], upstream=upstream,
                   snippet=table["snippet"], observed=table["observed"], expected=table["expected"],
                   matches=matches, path=str(path), device=table.get("device"), notes=table.get("notes"),
                   measured_error=table.get("measured_error"), intermittent=intermittent,
                   snippet_status=table.get("snippet_status"),
                   observed_rtol=None if rtol is None else float(rtol))


def load_findings(path) -> list:
    """The findings of one expectations file; UsageError naming the file, the finding and the fix
    if it is malformed."""
    path = Path(str(path))
    findings, seen = [], set()
    for number, table in enumerate(_read(path).get("finding", []), start=1):
        finding = _finding(table, number, path)
        if finding.id in seen:
            raise UsageError(f"expectations file {path}: finding id {finding.id!r} is used twice; give each "
                             f"finding its own id (merge them if they are one mechanism)")
        seen.add(finding.id)
        findings.append(finding)
    return findings


def expectations_of(findings: list, adapter_id: str | None = None) -> list:
    """One Expectation per match row, the rows that are not intermittent first, else in file order;
    `adapter_id` restricts the rows that name no adapter."""
    entries = []
    for finding in findings:
        for number, match in enumerate(finding.matches, start=1):
            filters = dict(match.filters)
            if adapter_id is not None:
                filters.setdefault("adapter", (adapter_id,))
            source = f"{finding.path} finding {finding.id}" + (f" match {number}" if len(finding.matches) > 1 else "")
            entries.append(Expectation(finding, filters, match.clause, match.intermittent, source))
    # The suite judges a pass by the first entry listing the item: with the intermittent rows last,
    # a pass is tolerated only where every row listing the item is intermittent, whatever the order.
    return sorted(entries, key=lambda entry: entry.intermittent)


def load_file(path, *, adapter_id: str | None = None) -> list:
    """The expectations of one file, one per match row; UsageError naming the file and finding if malformed."""
    return expectations_of(load_findings(path), adapter_id)


def builtin_path(adapter_id: str):
    """The expectations file shipped for a built-in adapter, or None if it has none."""
    resource = files("normspec.adapters").joinpath("expectations", f"{adapter_id}.toml")
    return resource if resource.is_file() else None


def builtin_findings(adapter_id: str) -> list:
    """The findings shipped for a built-in adapter (none if it has no file)."""
    path = builtin_path(adapter_id)
    return load_findings(path) if path is not None else []


def builtin(adapter_id: str) -> list:
    """The expectations shipped for a built-in adapter (none if it has no file)."""
    return expectations_of(builtin_findings(adapter_id), adapter_id)


# A snippet's `observed` text, matched against what the snippet prints on this machine: verbatim, unless the
# finding gives `observed_rtol`. XLA's CPU code sums in an order that depends on the machine's vector width,
# so a float32 or float16 result of a JAX snippet can differ in its last digits from the machine where
# `observed` was recorded; such a finding states how far (FORMAT.md), and its numbers are compared to that
# relative tolerance, the text between them exactly.
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)"


def _same_number(printed: str, recorded: str, rtol: float) -> bool:
    a, b = float(printed), float(recorded)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def output_shows_observed(output: str, observed: str, rtol: float | None = None) -> bool:
    """Whether `output` (a snippet's standard output) contains `observed`: verbatim, or, with `rtol`, with
    the same text between its numbers and each number within `rtol` (relative) of the recorded one."""
    if observed in output:
        return True
    numbers = re.findall(_NUMBER, observed)
    if rtol is None or not numbers:
        return False
    texts = re.split(_NUMBER, observed)
    pattern = "".join(re.escape(text) + (f"({_NUMBER})" if i < len(numbers) else "") for i, text in enumerate(texts))
    return any(all(_same_number(printed, recorded, rtol) for printed, recorded in zip(match.groups(), numbers))
               for match in re.finditer(pattern, output))
