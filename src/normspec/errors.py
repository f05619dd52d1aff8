"""Errors that name the violated clause, so that every message can be looked up.

`normspec spec ID` prints the clause text named in any of these messages.
"""
from __future__ import annotations


class NormspecError(Exception):
    """Base class of every error normspec raises on purpose."""


class ConfigurationError(NormspecError, ValueError):
    """An invalid configuration or input, rejected as the clause `clause` requires."""

    def __init__(self, clause: str, message: str):
        self.clause = clause
        super().__init__(f"[{clause}] {message}")


class UsageError(NormspecError):
    """A bad command-line option, adapter name or expectations file (exit status 2)."""
