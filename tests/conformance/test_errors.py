"""Invalid configurations must be rejected with an error (spec ERR-1)."""
import pytest

from normspec.cases import make_layer
from normspec.compare import Context
from normspec.error_inputs import error_case
from normspec.registry import OPS

KINDS = sorted({kind for row in OPS.values() for kind in row.error_kinds})


@pytest.mark.clauses("ERR-1.2", "ERR-1.3", "ERR-1.4", "ERR-1.5", "ERR-1.6")
@pytest.mark.dtypes("float32")
@pytest.mark.parametrize("kind", KINDS)
def test_invalid_configuration_raises(adapter, op, dtype, device, kind):
    if kind not in OPS[op].error_kinds:
        pytest.skip(f"not applicable: {kind} is not a configuration of {op}")
    case, clause = error_case(kind, op, dtype, adapter.conventions.channel_axis)
    try:
        layer = make_layer(adapter, case, device)
        layer(case.inputs[0], training=True)
    except Exception:
        return
    Context(adapter.id, op, dtype, device, case.shape).fail(
        clause, f"configuration {kind}", f"accepted {kind} ({case.attrs or ''} eps={case.eps}, "
        f"momentum alpha={case.momentum}) and returned an output; the spec requires an error")
