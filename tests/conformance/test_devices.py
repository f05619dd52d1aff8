"""Agreement between devices: the same case on CUDA and on the CPU."""
import pytest
from hypothesis import given, strategies as st

from normspec.cases import first_step_bound, observe
from normspec.compare import Context, assert_within
from normspec.strategies import cases_for


@pytest.mark.clauses("NUM-1.1")
@pytest.mark.devices("cuda")
@given(data=st.data())
def test_cuda_agrees_with_cpu(adapter, op, dtype, device, data):
    """Both devices meet NUM-1.1, so they differ by at most twice the bound."""
    case = data.draw(cases_for(adapter, op=op, dtype=dtype, min_reduction=2, steps=[True]), label="case")
    bound = 2 * first_step_bound(case, adapter.conventions.running_var_estimator)
    assert_within(observe(adapter, case, "cuda"), observe(adapter, case, "cpu"), bound, clause="NUM-1.1",
                  context=Context(adapter.id, op, dtype, "cuda", case.shape), what="cuda output against cpu")
