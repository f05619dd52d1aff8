"""The suite can fail: deliberately broken implementations are caught, citing the
clause they break. (A first sample; the full mutant zoo is tracked separately.)"""
import numpy as np
import pytest
from hypothesis import Phase, given, settings

from normspec import reference
from normspec.adapters.numpy_reference import NumpyReferenceAdapter
from normspec.driver import run_case
from normspec.compare import NonConformance
from normspec.strategies import cases_for


def _layer_norm_float32(x, normalized_shape, weight, bias, eps, *, one_pass=False, eps_outside=False,
                        accumulate=np.float32):
    """A LayerNorm kernel computing in float32 (or `accumulate`), with optional classic mistakes."""
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    values = x.astype(accumulate)
    mean = values.mean(axis=axes, keepdims=True, dtype=accumulate)
    if one_pass:
        variance = (values * values).mean(axis=axes, keepdims=True, dtype=accumulate) - mean * mean
    else:
        variance = ((values - mean) ** 2).mean(axis=axes, keepdims=True, dtype=accumulate)
    scale = 1 / (np.sqrt(np.maximum(variance, 0)) + eps) if eps_outside else 1 / np.sqrt(variance + eps)
    y = (values - mean) * scale
    y = y if weight is None else y * weight.astype(accumulate)
    y = y if bias is None else y + bias.astype(accumulate)
    return y.astype(x.dtype)


class _Mutant(NumpyReferenceAdapter):
    def __init__(self, name, **layer_norm_options):
        self.id, self._options = f"mutant-{name}", layer_norm_options

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
        if self._options.get("float32_output"):
            return reference.layer_norm(x, normalized_shape, weight, bias, eps=eps).astype(np.float32)
        return _layer_norm_float32(x, normalized_shape, weight, bias, eps, **self._options)


def _caught(adapter, op, dtype, families, max_examples=100):
    """The clause of the first failure the suite finds in `max_examples`, or None."""
    @settings(max_examples=max_examples, derandomize=True, database=None, phases=[Phase.generate])
    @given(cases_for(adapter, op=op, dtype=dtype, min_reduction=2, families=families))
    def run(case):
        run_case(adapter, case, "cpu", clause="NUM-1.4" if case.exact_statistics else "NUM-1.1")
    try:
        run()
    except NonConformance as failure:
        return failure.clause
    return None


def test_correct_float32_kernel_passes():
    """The harness does not reject a correct implementation computing in float32."""
    assert _caught(_Mutant("none"), "layer_norm", "float32", ("well_conditioned", "large_offset",
                                                                "exact_statistics", "spread_near_eps")) is None


@pytest.mark.parametrize("mutant,dtype,families,clause", [
    (_Mutant("eps-outside-sqrt", eps_outside=True), "float32", ("exact_statistics",), "NUM-1.4"),
    (_Mutant("one-pass-variance", one_pass=True), "float32", ("large_offset",), "NUM-1.1"),
    (_Mutant("float16-accumulation", accumulate=np.float16), "float16", ("large_offset",), "NUM-1.1"),
    (_Mutant("float32-output", float32_output=True), "float16", ("well_conditioned",), "NUM-2.2"),
], ids=lambda value: value.id if isinstance(value, _Mutant) else None)
def test_broken_kernel_is_caught(mutant, dtype, families, clause):
    assert _caught(mutant, "layer_norm", dtype, families) == clause
