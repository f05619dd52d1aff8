"""Convert an expectations file from the old format (one [[expected_failure]] per test, op and
dtype) to the finding-centred one (adapters/expectations/FORMAT.md):

    python -m normspec.expectations_convert OLD.toml [NEW.toml] [--adapter ID]

Entries with the same `reason` are one mechanism and become one [[finding]]. Their filters
become as few [[finding.matches]] rows as possible: rows with the same clause and
intermittence that differ in one field only are merged into one row listing that field's
values, which matches exactly the union of the two, so every test item matches the same
clauses as before. The finding keeps the shortest standalone snippet of its entries (one that
imports no normspec and is not a pytest command; a CPU one before a CUDA one, one that prints
before one that does not), with that entry's observed and expected values. A snippet that
uses np, ml_dtypes, tf, keras, torch, jax, jnp or nnx without importing them gets the imports,
and one that leaves its value in `y` without printing gets `print(y)`. Where no entry is
standalone, the first entry's minimal input is kept with `snippet_status = "needs standalone
rewrite"`. An entry that is not intermittent but whose every item an earlier intermittent entry
lists becomes intermittent, with a note: the old files let the first entry listing an item
decide whether its pass was tolerated, the new format tolerates it only where every row listing
it is intermittent. Without NEW.toml the result goes to standard output; a summary goes to
standard error. Review the result before using it: titles, ids and `belongs_to` are mechanical
guesses.
"""
from __future__ import annotations

import argparse
import ast
import builtins
import re
import sys
import textwrap
import tomllib
from collections import Counter
from itertools import permutations
from pathlib import Path

from normspec import clauses, toml_emit
from normspec.adapters import DTYPES
from normspec.registry import ALL_OP_NAMES
from normspec.errors import UsageError
from normspec.expectations import FILTERS, NEEDS_REWRITE, NOT_REPORTED, load_findings

_OLD_REQUIRED = ("test", "clause", "reason", "version", "minimal_input", "observed", "expected")
_OLD_KNOWN = {*_OLD_REQUIRED, *FILTERS, "measured_error", "notes", "intermittent"}
DIMENSIONS = ("test", *FILTERS)
_ORDER = {"op": ALL_OP_NAMES, "dtype": DTYPES, "device": ("cpu", "cuda")}
# Names snippets use without importing them, and the import that defines each.
_IMPORTS = {"np": "import numpy as np", "ml_dtypes": "import ml_dtypes", "tf": "import tensorflow as tf",
            "keras": "import keras", "torch": "import torch", "jax": "import jax",
            "jnp": "import jax.numpy as jnp", "nnx": "from flax import nnx"}
_CUDA_VERSION = re.compile(r"\bcu\d|cuda|nvidia", re.IGNORECASE)
# Reasons that describe the adapter's own composition (argument checks, the running update, the
# RMSNorm and InstanceNorm compositions), which cannot be filed against the framework.
_ADAPTER_OWN = re.compile(r"RMSNorm composition|InstanceNorm composition|the composition (keeps|takes)|"
                          r"^the running update|nothing (rejects|compares)")
_STOPWORDS = {"a", "an", "the", "of", "in", "is", "are", "to", "and", "with", "by", "on", "for", "its", "as",
              "at", "from", "it", "be", "than", "that", "which", "their", "here", "this", "s"}
_WIDTH = 100


def _read_old(path: Path) -> tuple:
    """The old file's header comment and entries; UsageError if it is not an old-format file."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"{path}: cannot be read as TOML ({error})") from None
    if "expected_failure" not in data or set(data) != {"expected_failure"}:
        raise UsageError(f"{path}: not an old-format expectations file (it has no [[expected_failure]] tables, or "
                         f"other tables {sorted(set(data) - {'expected_failure'})})")
    for number, entry in enumerate(data["expected_failure"], start=1):
        missing = [k for k in _OLD_REQUIRED if not isinstance(entry.get(k), str)]
        unknown = sorted(set(entry) - _OLD_KNOWN)
        if missing or unknown:
            raise UsageError(f"{path} entry {number}: missing {missing} or unknown keys {unknown}; fix the entry "
                             f"first (the old format's keys are {sorted(_OLD_KNOWN)})")
    header = []
    for line in text.splitlines():
        if not line.startswith("#") and line.strip():
            break
        header.append(line[1:].removeprefix(" ") if line.startswith("#") else "")
    return "\n".join(header).strip("\n"), data["expected_failure"]


def _box(entry: dict) -> dict:
    """An entry's filters as field -> set of accepted values (absent field: any value)."""
    return {name: frozenset([str(entry[name])]) for name in DIMENSIONS if name in entry}


def _merge_once(boxes: list, order: tuple) -> list:
    """Merge, one field at a time in `order`, boxes that agree on every other field."""
    for name in order:
        merged = {}
        for box, first in boxes:
            if name not in box:
                slot = merged.setdefault(("whole", tuple(sorted(box.items(), key=lambda kv: kv[0]))), [box, first])
                slot[1] = min(slot[1], first)
                continue
            rest = tuple(sorted(((k, v) for k, v in box.items() if k != name), key=lambda kv: kv[0]))
            slot = merged.setdefault(("except", name, rest), [dict(box), first])
            slot[0][name] = slot[0][name] | box[name]
            slot[1] = min(slot[1], first)
        boxes = [(box, first) for box, first in merged.values()]
    return boxes


def merge_rows(entries: list) -> list:
    """The fewest rows found (over several field orders) that match exactly what `entries` match:
    (filters, clause, intermittent, index of the first entry) per row, in entry order."""
    rows = []
    by_outcome = {}
    for index, entry in enumerate(entries):
        by_outcome.setdefault((entry["clause"], bool(entry.get("intermittent", False))), []).append(
            (_box(entry), index))
    for (clause, intermittent), boxes in by_outcome.items():
        best = None
        for order in permutations(("op", "dtype", "test", "device")):
            order = order + tuple(d for d in DIMENSIONS if d not in order)
            merged, previous = boxes, None
            while previous is None or len(merged) < len(previous):
                previous, merged = merged, _merge_once(merged, order)
            if best is None or len(merged) < len(best):
                best = merged
        rows += [(box, clause, intermittent, first) for box, first in best]
    return sorted(rows, key=lambda row: row[3])


def sorted_values(name: str, values) -> list:
    order = _ORDER.get(name, ())
    return sorted(values, key=lambda v: (order.index(v) if v in order else len(order), v))


def _undefined_names(tree) -> set:
    bound, loaded = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return loaded - bound


def standalone_snippet(text: str) -> str | None:
    """`text` as a snippet that runs with the framework and NumPy alone (imports and a final
    print added where missing), or None if it imports normspec, is a pytest command or uses names
    it does not define."""
    if re.search(r"\bnormspec\b", text) or re.search(r"(^|\n)\s*#?\s*(pytest|python -m)\s", text):
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    undefined = _undefined_names(tree)
    if undefined - set(_IMPORTS):
        return None
    snippet = text.strip("\n")
    if undefined:
        snippet = "\n".join(_IMPORTS[name] for name in sorted(undefined)) + "\n" + snippet
    assigns_y = any(isinstance(t, ast.Name) and t.id == "y" for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets)
    if "print(" not in text and assigns_y:
        snippet += "\nprint(y)"
    return snippet


def _is_cuda(entry: dict) -> bool:
    return entry.get("device") == "cuda" or bool(_CUDA_VERSION.search(entry["version"]))


def _best_evidence(group: list) -> tuple:
    """The entry whose minimal input serves as the finding's snippet, that snippet, and whether
    it still needs a standalone rewrite."""
    candidates = [(entry, standalone_snippet(entry["minimal_input"])) for entry in group]
    runnable = [(e, s) for e, s in candidates if s is not None]
    if not runnable:
        return group[0], group[0]["minimal_input"].strip("\n"), True
    entry, snippet = min(runnable, key=lambda es: (_is_cuda(es[0]), "print(" not in es[1], len(es[1])))
    return entry, snippet, False


def first_sentence(text: str, limit: int = 150) -> str:
    """A one-line title from `text`: its first sentence, cut where it is longer than `limit`
    at its first colon or semicolon outside parentheses, else after the last word outside them."""
    flat = " ".join(text.split())
    match = re.search(r"(?<!\bi\.e\.)(?<!\be\.g\.)(?<=[.!?])\s+(?=[A-Z(])", flat)
    sentence = (flat[:match.start()] if match else flat).rstrip(".")
    if len(sentence) <= limit:
        return sentence
    depth, colon, space = 0, None, None
    for position, char in enumerate(sentence[:limit + 1]):
        depth = max(0, depth + {"(": 1, ")": -1}.get(char, 0))
        if depth == 0 and char in ":;" and position >= 40 and colon is None:
            colon = position
        if depth == 0 and char == " ":
            space = position
    if colon is not None:
        return sentence[:colon]
    return sentence[:space or limit].rstrip(",;: ") + " ..."


def _slug(text: str, words: int = 4) -> str:
    tokens = [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in _STOPWORDS]
    return "-".join(tokens[:words])


def _wrap(text: str) -> str:
    """Long lines wrapped for reading; a one-line text stays one line."""
    if len(text) <= _WIDTH and "\n" not in text:
        return text
    return "\n".join(textwrap.fill(p, _WIDTH, break_long_words=False, break_on_hyphens=False) if p.strip() else p
                     for p in text.split("\n"))


def _label(entry: dict) -> str:
    """An old entry's test and filters, to say which entry a note came from."""
    return " ".join([entry["test"], *(f"{name}={entry[name]}" for name in FILTERS if name in entry)])


def _notes(group: list, evidence: dict) -> str | None:
    """The snippet entry's notes, then each other entry's distinct notes under the test item it was about."""
    texts = [_wrap(evidence["notes"])] if "notes" in evidence else []
    seen = {evidence.get("notes")}
    for entry in group:
        if "notes" in entry and entry["notes"] not in seen:
            seen.add(entry["notes"])
            texts.append(_wrap(f"{_label(entry)}: {entry['notes']}"))
    return "\n\n".join(texts) or None


def _versions(group: list) -> dict:
    versions = {}
    for entry in group:
        kind = "cuda" if _is_cuda(entry) else "cpu"
        listed = versions.setdefault(kind, [])
        if entry["version"] not in listed:
            listed.append(entry["version"])
    return {kind: "; ".join(versions[kind]) for kind in ("cpu", "cuda") if kind in versions}


def _clause_order(ids) -> list:
    index = list(clauses.index())
    return sorted(set(ids), key=lambda c: index.index(c) if c in index else len(index))


def _contains(outer: dict, inner: dict) -> bool:
    """Whether every test item the box `inner` matches is matched by the box `outer`."""
    return all(name in inner and inner[name] <= values for name, values in outer.items())


def _tolerant_first(entries: list) -> dict:
    """Non-intermittent entries whose every item an earlier intermittent entry lists: index ->
    that entry's index. The old files let the first entry listing an item decide whether its pass
    was tolerated; the new format tolerates it only where every row listing it is intermittent,
    so these entries become intermittent to keep the outcome."""
    boxes = [_box(entry) for entry in entries]
    covered = {}
    for index, entry in enumerate(entries):
        if not entry.get("intermittent", False):
            earlier = next((j for j in range(index) if entries[j].get("intermittent", False)
                            and _contains(boxes[j], boxes[index])), None)
            if earlier is not None:
                covered[index] = earlier
    return covered


def _finding_ids(groups: dict, adapter_id: str) -> dict:
    """reason -> a unique id: adapter, the group's most cited clause and a slug of the title."""
    ids, used = {}, set()
    for reason, group in groups.items():
        main_clause = Counter(e["clause"] for e in group).most_common(1)[0][0]
        base = f"{adapter_id}-{main_clause.lower().replace('.', '-')}-{_slug(first_sentence(reason))}".strip("-")
        finding_id, number = base, 2
        while finding_id in used:
            finding_id, number = f"{base}-{number}", number + 1
        used.add(finding_id)
        ids[reason] = finding_id
    return ids


def convert_entries(entries: list, adapter_id: str) -> list:
    """The findings (as TOML tables) for an old file's entries, in the order their reasons first appear."""
    groups = {}
    for entry in entries:
        groups.setdefault(entry["reason"], []).append(entry)
    ids = _finding_ids(groups, adapter_id)
    entries = list(entries)
    for index, earlier in _tolerant_first(entries).items():
        other = entries[earlier]
        note = (f"Intermittent on {_label(entries[index])}: the intermittent finding {ids[other['reason']]} "
                f"({other['clause']}) lists the same test item, and its pass is tolerated.")
        notes = entries[index].get("notes")
        entries[index] = dict(entries[index], intermittent=True, notes=f"{notes} {note}" if notes else note)
    groups = {}
    for entry in entries:
        groups.setdefault(entry["reason"], []).append(entry)
    findings = []
    for reason, group in groups.items():
        evidence, snippet, needs_rewrite = _best_evidence(group)
        rows = merge_rows(group)
        all_intermittent = all(intermittent for _, _, intermittent, _ in rows)
        finding = {"id": ids[reason], "title": first_sentence(reason), "mechanism": _wrap(reason),
                   "clauses": _clause_order(e["clause"] for e in group), "versions": _versions(group),
                   "belongs_to": "adapter" if _ADAPTER_OWN.search(reason) else "framework",
                   "upstream": NOT_REPORTED, "snippet": snippet + "\n"}
        if needs_rewrite:
            finding["snippet_status"] = NEEDS_REWRITE
        if _is_cuda(evidence):
            finding["device"] = "cuda"
        finding["observed"] = evidence["observed"]
        finding["expected"] = evidence["expected"]
        if "measured_error" in evidence:
            finding["measured_error"] = evidence["measured_error"]
        notes = _notes(group, evidence)
        if notes:
            finding["notes"] = notes
        if all_intermittent:
            finding["intermittent"] = True
        finding["matches"] = []
        for box, clause, intermittent, _ in rows:
            row = {}
            for name in DIMENSIONS:
                if name in box:
                    values = sorted_values(name, box[name])
                    row[name] = values[0] if len(values) == 1 else values
            row["clause"] = clause
            if intermittent and not all_intermittent:
                row["intermittent"] = True
            finding["matches"].append(row)
        findings.append(finding)
    return findings


def convert_text(path: Path, adapter_id: str) -> tuple:
    """The new file's text for an old file, and the findings written into it."""
    header, entries = _read_old(path)
    findings = convert_entries(entries, adapter_id)
    note = (f"Converted from the [[expected_failure]] format by `python -m normspec.expectations_convert`: "
            f"{len(entries)} entries, {len(findings)} findings. Format: FORMAT.md.")
    header = (header + "\n\n" if header else "") + note
    return toml_emit.dumps(header, "finding", findings, inline=("matches",)), findings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m normspec.expectations_convert",
                                     description="Convert an [[expected_failure]] expectations file to [[finding]]s.")
    parser.add_argument("old", metavar="OLD.toml")
    parser.add_argument("new", metavar="NEW.toml", nargs="?", help="where to write (default: standard output)")
    parser.add_argument("--adapter", help="adapter id for the finding ids (default: OLD's file name)")
    args = parser.parse_args(argv)
    old = Path(args.old)
    adapter_id = args.adapter or old.stem
    try:
        text, findings = convert_text(old, adapter_id)
        if args.new:
            Path(args.new).write_text(text, encoding="utf-8")
            load_findings(args.new)  # what was written is a valid expectations file
        else:
            sys.stdout.write(text)
    except UsageError as error:
        print(f"normspec.expectations_convert: {error}", file=sys.stderr)
        return 2
    rewrite = [f["id"] for f in findings if f.get("snippet_status") == NEEDS_REWRITE]
    own = [f["id"] for f in findings if f["belongs_to"] == "adapter"]
    rows = sum(len(f["matches"]) for f in findings)
    print(f"{old}: {len(findings)} findings, {rows} match rows; {len(rewrite)} snippets need a standalone rewrite; "
          f"{len(own)} findings marked as the adapter's own composition (review them): {', '.join(own) or 'none'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
