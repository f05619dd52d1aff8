"""One case on CUDA and on the CPU.

Device agreement is not a clause of its own (spec/gradients.md requires no reproducibility
between devices): two outputs that each meet NUM-1.1 differ by at most twice its bound.
Comparing CUDA with the CPU would blame CUDA where only the CPU misses the reference (as
XLA:CPU's subnormal flushing does), so CUDA is held to the reference, and a failure quotes
the CPU's output of the same case as evidence of whether the devices part.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from normspec.driver import observe, run_case
from normspec.compare import NonConformance
from normspec.strategies import cases_for


def _cpu_line(adapter, case, failure: NonConformance) -> str:
    """The CPU's output at the failure's worst element, or why there is none."""
    try:
        cpu = observe(adapter, case, "cpu")
    except NonConformance as cpu_failure:
        return f"the cpu fails this case too: {str(cpu_failure).splitlines()[0]}"
    worst = failure.worst
    if worst is None or len(worst) != cpu.ndim:
        return f"the cpu output of this case: {np.array2string(cpu.ravel()[:8], precision=9)}"
    return f"the cpu output of this case at {list(worst)}: {cpu[tuple(worst)]:.9g}"


@pytest.mark.clauses("NUM-1.1")
@pytest.mark.devices("cuda")
@given(data=st.data())
def test_cuda_meets_the_reference_on_a_cpu_case(adapter, op, dtype, device, data):
    """CUDA's output of a one-step case meets NUM-1.1; a failure quotes the CPU's output."""
    case = data.draw(cases_for(adapter, op=op, dtype=dtype, min_reduction=2, steps=[True]), label="case")
    try:
        run_case(adapter, case, "cuda")
    except NonConformance as failure:
        raise failure.with_evidence(_cpu_line(adapter, case, failure)) from None
