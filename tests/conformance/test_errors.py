"""Invalid configurations must be rejected with an error (spec ERR-1)."""
import pytest

from normspec.conventions import make_layer
from normspec.compare import Context
from normspec.error_inputs import error_case
from normspec.registry import OPS


@pytest.mark.clauses("ERR-1.2", "ERR-1.3", "ERR-1.4", "ERR-1.5", "ERR-1.6")
@pytest.mark.dtypes("float32")
@pytest.mark.per_op("kind", lambda op: OPS[op].error_kinds)
def test_invalid_configuration_raises(adapter, op, dtype, device, kind, request):
    """Each kind of invalid configuration the op's registry row lists (normspec.error_inputs)."""
    case, clause = error_case(kind, op, dtype, adapter.conventions.channel_axis,
                              running_stats=adapter.capabilities.instance_norm_running_stats)
    request.node.user_properties.append(("normspec_clauses", [clause]))
    try:
        layer = make_layer(adapter, case, device)
        layer(case.inputs[0], training=True)
    except Exception:
        return
    Context(adapter.id, op, dtype, device, case.shape).fail(
        clause, f"configuration {kind}", f"accepted {kind} ({case.attrs or ''} eps={case.eps}, "
        f"momentum alpha={case.momentum}) and returned an output; the spec requires an error")
