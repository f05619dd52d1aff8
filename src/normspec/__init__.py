"""normspec: the executable, citable specification of normalization layers.

`normspec.reference` holds the NumPy oracle, `normspec.adapters` the framework
adapters, `normspec.clauses` the clause index read from the spec text.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("normspec")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
