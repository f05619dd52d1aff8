"""Loads normspec's pytest plugin for the repository's own test run (see README.md)."""
pytest_plugins = ("normspec.pytest_plugin",)
