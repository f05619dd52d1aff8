"""Expectations files: the known non-conformances of an adapter (format: adapters/expectations/FORMAT.md)."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from normspec.errors import UsageError

_REQUIRED = ("test", "clause", "reason", "version", "minimal_input", "observed", "expected")
# Filters name parameters of the tests: the adapter, op, dtype and device, and the
# extra parameters some tests have (kind, family, value, identity), compared as text.
_FILTERS = ("adapter", "op", "dtype", "device", "kind", "family", "value", "identity")
_KNOWN = set(_REQUIRED) | set(_FILTERS) | {"measured_error", "notes", "intermittent"}


@dataclass(frozen=True)
class Expectation:
    test: str
    clause: str
    reason: str
    source: str  # file and entry number, for messages
    filters: dict
    intermittent: bool = False  # the failure does not show in every run (a pass is then no error)

    def matches(self, test: str, params: dict) -> bool:
        return test == self.test and all(params.get(k) == str(v) for k, v in self.filters.items())


def load_file(path, *, adapter_id: str | None = None) -> list:
    """The entries of one expectations file; UsageError naming the file and entry if malformed."""
    path = Path(str(path))
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"expectations file {path}: cannot be read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"expectations file {path}: not valid TOML ({error})") from None
    extra = set(data) - {"expected_failure"}
    if extra:
        raise UsageError(f"expectations file {path}: unknown table(s) {sorted(extra)}; use [[expected_failure]]")
    entries = []
    for number, entry in enumerate(data.get("expected_failure", []), start=1):
        where = f"{path} entry {number}"
        missing = [key for key in _REQUIRED if not isinstance(entry.get(key), str) or not entry[key].strip()]
        if missing:
            raise UsageError(f"expectations file {where}: missing or empty {', '.join(missing)} (see FORMAT.md)")
        unknown = set(entry) - _KNOWN
        if unknown:
            raise UsageError(f"expectations file {where}: unknown key(s) {sorted(unknown)}")
        filters = {key: entry[key] for key in _FILTERS if key in entry}
        if adapter_id is not None:
            filters.setdefault("adapter", adapter_id)
        intermittent = entry.get("intermittent", False)
        if not isinstance(intermittent, bool):
            raise UsageError(f"expectations file {where}: intermittent must be true or false")
        entries.append(Expectation(entry["test"], entry["clause"], entry["reason"], where, filters, intermittent))
    return entries


def builtin(adapter_id: str) -> list:
    """The expectations shipped for a built-in adapter (none if it has no file)."""
    resource = files("normspec.adapters").joinpath("expectations", f"{adapter_id}.toml")
    return load_file(resource, adapter_id=adapter_id) if resource.is_file() else []
