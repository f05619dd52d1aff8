"""A small, deterministic TOML writer for expectations files: tables of strings, booleans,
lists of strings, inline tables of those and arrays of tables, which tomllib reads back equal."""
from __future__ import annotations

import json
import re
import tomllib

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# Control characters a multi-line literal string cannot hold (tab and newline it can).
_NOT_LITERAL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|'''")


def key(name: str) -> str:
    return name if _BARE_KEY.match(name) else string(name)


def string(text: str) -> str:
    """A multi-line literal string ('''...''') for text with line breaks, so snippets read as
    written; else a basic string."""
    if "\n" in text and not _NOT_LITERAL.search(text):
        return "'''\n" + text + "'''"  # the newline after the opening quotes is not part of the value
    # JSON's escapes are TOML's, except that TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007F")


def value(item) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, str):
        return string(item)
    if isinstance(item, list) and all(isinstance(v, str) for v in item):
        return "[" + ", ".join(string(v) for v in item) + "]"
    if isinstance(item, dict) and all(isinstance(v, (str, bool, list)) for v in item.values()):
        return "{ " + ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items()) + " }" if item else "{}"
    raise TypeError(f"toml_emit writes strings, booleans, lists of strings and tables of those, not {item!r}")


def _is_table_array(item) -> bool:
    return isinstance(item, list) and bool(item) and all(isinstance(v, dict) for v in item)


def _table(path: str, table: dict, inline: tuple) -> list:
    """The lines of one [[path]] table: its own keys first, then its arrays of tables, those
    named in `inline` as arrays of one-line inline tables."""
    lines = [f"[[{path}]]"]
    lines += [f"{key(k)} = {value(v)}" for k, v in table.items() if not _is_table_array(v)]
    for k, v in table.items():
        if _is_table_array(v) and k in inline:
            lines += [f"{key(k)} = [", *(f"    {value(row)}," for row in v), "]"]
    for k, v in table.items():
        if _is_table_array(v) and k not in inline:
            for sub in v:
                lines += ["", *_table(f"{path}.{key(k)}", sub, inline)]
    return lines


def dumps(header: str, name: str, tables: list, inline: tuple = ()) -> str:
    """A document of a comment header and the array of tables `name` (the arrays of tables named
    in `inline` written one inline table a line); ValueError if tomllib would not read back
    exactly `{name: tables}`."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    for table in tables:
        lines += ["", *_table(key(name), table, inline)]
    text = "\n".join(lines).lstrip("\n") + "\n"
    if tomllib.loads(text) != ({name: tables} if tables else {}):
        raise ValueError("toml_emit: the written document does not read back equal")
    return text
