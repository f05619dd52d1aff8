"""Production configurations (normspec.production): rows of transformer widths up to
12,288, normalized_shape over the input's rank minus one, GroupNorm with 64 and 128 groups
of up to 512 channels, BatchNorm and InstanceNorm with up to 512 channels and 56x56 images.
The shape pools never reach these sizes, where kernels switch algorithm; each runs once per
adapter, op and dtype, in every profile, with both value recipes."""
import pytest

from normspec import production
from normspec.driver import run_case


@pytest.mark.clauses("NUM-1.1", "NUM-1.5", "NUM-2.2", "GEN-3", "GEN-6", "LN-2", "RMS-2", "GN-2", "IN-2", "BN-2",
                     "BN-3", "BN-4.1")
# The configuration's name is the test's `kind` parameter, the name expectations rows filter on.
@pytest.mark.per_op("kind", production.names)
def test_production_shapes(adapter, op, dtype, device, kind):
    """Each slice with its own statistics: a large offset over its spread (a cancelling
    variance formula fails NUM-1.1), then a mean, spread and trend of its own (normalizing
    over the wrong elements, or with another channel's running statistics, fails it)."""
    for recipe in production.RECIPES:
        run_case(adapter, production.case(adapter, op=op, dtype=dtype, name=kind, recipe=recipe), device)
