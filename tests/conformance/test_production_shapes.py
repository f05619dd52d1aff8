"""Production configurations (normspec.production): rows of transformer widths up to 12,288
and a prime width of 10,007, normalized_shape over the input's rank minus one, GroupNorm with
64 and 128 groups of up to 512 channels and with groups of 8,192 elements, BatchNorm and
InstanceNorm with up to 512 channels and 56x56 images. The shape pools never reach these
sizes, where kernels switch algorithm; each runs once per adapter, op and dtype, in every
profile, with both value recipes, and once more per half dtype with float32 parameters where
the adapter declares mixed precision (NUM-2.3): a transformer's LayerNorm runs on bfloat16
rows of 4,096 with float32 weights. The backward pass runs on the configurations of
production.BACKWARD, for adapters with `backward_ops`."""
import pytest

from normspec import backward, production
from normspec.compare import MIXED_PRECISION_ROUTING
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


@pytest.mark.clauses("NUM-2.3", "NUM-2.2", "NUM-1.5", "GEN-3", "GEN-6")
@pytest.mark.dtypes("float16", "bfloat16")
@pytest.mark.per_op("kind", production.names)
def test_production_shapes_mixed_precision(adapter, op, dtype, device, param_dtype, kind):
    """The same configurations on half-precision inputs with parameters and running statistics
    in `param_dtype` (float32): a kernel that takes another path for long rows or many channels
    under mixed precision (rounding the parameters to the input dtype there) fails NUM-2.3."""
    for recipe in production.RECIPES:
        case = production.case(adapter, op=op, dtype=dtype, name=kind, recipe=recipe, param_dtype=param_dtype)
        run_case(adapter, case, device, clause=MIXED_PRECISION_ROUTING)


@pytest.mark.requires("backward_ops")
@pytest.mark.clauses("GRAD-6.1", "GRAD-6.3", "GRAD-7.2", "GRAD-8.2", "GEN-6")
@pytest.mark.per_op("kind", production.backward_names)
def test_production_shapes_vjp(adapter, op, dtype, device, kind):
    """The backward pass of the training call at production sizes (production.BACKWARD): dx
    within GRAD-6.1, dgamma and dbeta within GRAD-6.3. A backward kernel that drops the tail of
    a long row, or reduces too few elements of a long slice, fails here only."""
    for recipe in production.RECIPES:
        backward.run_vjp_case(adapter, production.vjp_case(adapter, op=op, dtype=dtype, name=kind, recipe=recipe),
                              device)


@pytest.mark.requires("backward_ops")
@pytest.mark.clauses("GRAD-6.1", "GRAD-6.3", "GRAD-8.2", "GEN-6")
@pytest.mark.dtypes("float16", "bfloat16")
@pytest.mark.per_op("kind", production.backward_names)
def test_production_shapes_mixed_precision_vjp(adapter, op, dtype, device, param_dtype, kind):
    """The same with float32 parameters (NUM-2.3): dgamma and dbeta in float32 (GRAD-8.2)."""
    for recipe in production.RECIPES:
        case = production.vjp_case(adapter, op=op, dtype=dtype, name=kind, recipe=recipe, param_dtype=param_dtype)
        backward.run_vjp_case(adapter, case, device)
