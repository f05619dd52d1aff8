"""Mixed precision (NUM-2.3): float16 and bfloat16 inputs with affine parameters and running
statistics of another dtype (float32), as torch modules fed half-precision activations, Flax's
`param_dtype` and Keras' mixed policies run them. Only adapters that declare the pairs
(Capabilities.mixed_precision) get these items."""
import pytest
from hypothesis import given, strategies as st

from normspec import backward
from normspec.compare import MIXED_PRECISION_ROUTING
from normspec.driver import run_case
from normspec.strategies import backward_cases, cases_for


@pytest.mark.clauses("NUM-2.3", "NUM-2.2", "NUM-1.5", "BN-4.3", "GEN-6")
@pytest.mark.dtypes("float16", "bfloat16")
@given(data=st.data())
def test_mixed_precision_matches_reference(adapter, op, dtype, device, param_dtype, data):
    """Outputs in the input dtype within NUM-1.1's bound for the given (float32) parameters, and
    running statistics kept and updated in the parameters' dtype (NUM-1.5 with its roundoff),
    a fresh state's included; every value family, 1 to 4 steps. gamma and beta are always present:
    without them and without running statistics nothing is in the parameters' dtype, and the case
    is test_forward_matches_reference's."""
    case = data.draw(cases_for(adapter, op=op, dtype=dtype, param_dtype=param_dtype, affine=True,
                               min_reduction=2), label="case")
    run_case(adapter, case, device, clause=MIXED_PRECISION_ROUTING)


@pytest.mark.requires("backward_ops")
@pytest.mark.clauses("GRAD-8.2", "GRAD-6.1", "GRAD-6.2", "GRAD-6.3")
@pytest.mark.dtypes("float16", "bfloat16")
@given(data=st.data())
def test_mixed_precision_vjp(adapter, op, dtype, device, param_dtype, data):
    """dx in the input dtype, dgamma and dbeta in the parameters' dtype (GRAD-8.2), each within
    GRAD-6 with its own dtype's rounding."""
    case = data.draw(backward_cases(adapter, op=op, dtype=dtype, param_dtype=param_dtype, affine=True), label="case")
    backward.run_vjp_case(adapter, case, device)
