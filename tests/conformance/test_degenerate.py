"""Degenerate inputs: constant slices (NUM-3), NaN and Inf (NUM-4), and a BatchNorm
channel with a single value in training (BN-5)."""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, strategies as st

from normspec.cases import Case
from normspec.conventions import make_layer
from normspec.driver import run_case
from normspec.dtypes import numpy_dtype
from normspec.compare import ClauseRouting, Context
from normspec.strategies import cases_for


@pytest.mark.clauses("NUM-3.1", "NUM-3.2")
@given(data=st.data())
def test_constant_slices(adapter, op, dtype, device, data):
    """Constant slices (eps > 0) give finite outputs, beta within the bound."""
    case = data.draw(cases_for(adapter, op=op, dtype=dtype, min_reduction=2, families=("constant_slices",)),
                     label="case")
    run_case(adapter, case, device, clause=ClauseRouting("NUM-3.2", nonfinite="NUM-3.1"))


@pytest.mark.clauses("NUM-4.1", "NUM-4.2", "NUM-1.1")
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@given(data=st.data())
def test_non_finite_propagation(adapter, op, dtype, device, value, data):
    """One NaN or Inf element: NaN spreads over its slice and nowhere else (NUM-4). The other
    slices are held to NUM-1.1 as usual."""
    case = data.draw(cases_for(adapter, op=op, dtype=dtype, min_reduction=2, families=("dyadic_grid",),
                               steps=[True]), label="case")
    x = case.inputs[0].copy()
    position = data.draw(st.integers(0, x.size - 1), label="flat position")
    x.reshape(-1)[position] = value
    run_case(adapter, dataclasses.replace(case, inputs=[x]), device,
             clause=ClauseRouting("NUM-1.1", nonfinite="NUM-4.1" if np.isnan(value) else "NUM-4.2"))


@pytest.mark.clauses("BN-5.1", "BN-5.2")
@pytest.mark.ops("batch_norm")
@pytest.mark.requires("batch_norm_training")
def test_single_value_channel(adapter, op, dtype, device):
    """Training on one value per channel: beta under the biased profile (BN-5.1); an error
    under the unbiased profile, whose running-variance estimate is undefined (BN-5.2)."""
    np_dtype = numpy_dtype(dtype)
    x = np.array([[0.5, -1.25, 3.0]], np_dtype)  # (N, C) = (1, 3): the channel axis is 1 = -1
    params = {"weight": np.array([1.5, -0.5, 2.0], np_dtype), "bias": np.array([0.25, 1.0, -2.0], np_dtype),
              "running_mean": None, "running_var": None}
    case = Case(op=op, dtype=dtype, inputs=[x], training=[True], eps=1e-5, params=params,
                channel_axis=adapter.conventions.channel_axis)
    if adapter.conventions.running_var_estimator == "biased":
        run_case(adapter, case, device, clause="BN-5.1")
        return
    try:
        make_layer(adapter, case, device)(x, training=True)
    except Exception:  # the error BN-5.2 requires
        return
    Context(adapter.id, op, dtype, device, x.shape).fail(
        "BN-5.2", "training step", "returned a result for one value per channel under the unbiased profile; "
        "the spec requires an error (the unbiased running variance divides by m - 1 = 0)")
