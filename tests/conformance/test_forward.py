"""Differential properties: every output and running statistic agrees with the
reference within the error bound of NUM-1 (spec/numerics.md)."""
import pytest
from hypothesis import given, strategies as st

from normspec.driver import run_case
from normspec.strategies import cases_for, long_slice_case


@pytest.mark.clauses("NUM-1.1", "NUM-1.5", "NUM-2.2", "GEN-3", "GEN-6", "BN-2", "BN-3", "BN-4.1", "BN-4.3")
@given(data=st.data())
def test_forward_matches_reference(adapter, op, dtype, device, data):
    """All value families (well conditioned, large offset, spread near eps, extreme
    magnitudes, constant slices, exact statistics), 1 to 4 training/evaluation steps."""
    case = data.draw(cases_for(adapter, op=op, dtype=dtype, min_reduction=2), label="case")
    run_case(adapter, case, device)


@pytest.mark.clauses("NUM-1.4", "NORM-3", "NORM-4", "BN-4.4")
@given(data=st.data())
def test_exact_statistics(adapter, op, dtype, device, data):
    """Inputs whose sums are exact in any order: the bound shrinks to a few ulps, so eps
    placement, a biased/unbiased mix-up or a wrong mean show even in float32."""
    case = data.draw(cases_for(adapter, op=op, dtype=dtype, min_reduction=2, families=("exact_statistics",)),
                     label="case")
    run_case(adapter, case, device, clause="NUM-1.4")


@pytest.mark.clauses("NUM-2.1")
@pytest.mark.dtypes("float16", "bfloat16")
@pytest.mark.parametrize("family", ["exact_statistics", "large_offset"])
def test_half_precision_accumulation(adapter, op, dtype, device, family):
    """A slice of 4096 elements: summed in float16 (bfloat16) the running sum stalls at
    2048 (256), so statistics accumulated in the input dtype are far off (NUM-2.1)."""
    run_case(adapter, long_slice_case(adapter, op=op, dtype=dtype, family=family), device, clause="NUM-2.1")
