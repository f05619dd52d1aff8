"""Test parametrization: each conformance test runs once per selected adapter, op, dtype
and device that it applies to and the adapter covers; the parameters of a collected item."""
from __future__ import annotations

import pytest

from normspec.dtypes import DTYPES
from normspec.registry import DEVICES, OP_NAMES

# param_dtype: a test of mixed precision (NUM-2.3) runs once per parameter dtype the adapter pairs with
# the input dtype (Capabilities.mixed_precision), and not at all for an adapter that declares none.
FIXTURES = ("adapter", "op", "dtype", "device", "param_dtype")


def marker_args(function, name: str) -> tuple:
    """The arguments of every @pytest.mark.<name> on `function`, in order."""
    return tuple(arg for mark in getattr(function, "pytestmark", []) if mark.name == name for arg in mark.args)


def parametrize(metafunc, suite) -> None:
    """Parametrize a test that asks for `adapter` (and `op`, `dtype`, `device`) over what the
    suite selects, the test's markers allow and each adapter covers. A device the adapter
    cannot use here is a skipped item, "not run" with the reason."""
    names = [n for n in FIXTURES if n in metafunc.fixturenames]
    if "adapter" not in names:
        return
    test_ops = marker_args(metafunc.function, "ops") or OP_NAMES
    test_dtypes = marker_args(metafunc.function, "dtypes") or DTYPES
    test_devices = marker_args(metafunc.function, "devices") or DEVICES
    per_op = marker_args(metafunc.function, "per_op")  # (name, function) or ()
    if per_op:
        names.append(per_op[0])
    needs = marker_args(metafunc.function, "requires")
    params, ids = [], []
    for adapter in suite.adapters:
        status = adapter.device_status()
        caps = adapter.capabilities
        if any(not getattr(caps, need) for need in needs):
            continue
        if not caps.same_dtype and "param_dtype" not in names:  # it runs the mixed-precision items alone
            continue
        # A required capability that is a tuple lists the ops it holds for (backward_ops, given_statistics,
        # data_parallel_backward): such a test covers those; the others every layer, fitted scaler and
        # data-parallel op the adapter declares.
        op_lists = [getattr(caps, need) for need in needs if isinstance(getattr(caps, need), tuple)]
        covered = op_lists[0] if op_lists else caps.ops + caps.scalers + caps.data_parallel
        for op in (o for o in suite.ops if o in test_ops and o in covered) if "op" in names else [None]:
            dtypes = ([d for d in suite.dtypes if d in caps.dtypes_for(op) and d in test_dtypes]
                      if "dtype" in names else [None])
            for dtype in dtypes:
                devices = [d for d in suite.devices if d in status and d in test_devices] if "device" in names else [None]
                parameter_dtypes = caps.parameter_dtypes_for(op, dtype) if "param_dtype" in names else [None]
                for device, param_dtype, extra in ((d, p, e) for d in devices for p in parameter_dtypes
                                                   for e in (per_op[1](op) if per_op else [None])):
                    values = {"adapter": adapter, "op": op, "dtype": dtype, "device": device,
                              "param_dtype": param_dtype}
                    if per_op:
                        values[per_op[0]] = extra
                    reason = status.get(device) if device else None
                    marks = [pytest.mark.skip(reason=f"not run: {reason}")] if reason else []
                    if reason:
                        suite.device_notes[(adapter.id, device)] = reason
                    params.append(pytest.param(*(values[n] for n in names), marks=marks))
                    ids.append("-".join(str(values[n].id if n == "adapter" else values[n]) for n in names))
    metafunc.parametrize(names, params, ids=ids)


def item_params(item) -> dict:
    """The item's parameters as text (the adapter by its id), as expectations filters and
    result records name them; {} for an item without parameters."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    # An empty parametrization (nothing applies) leaves pytest's NOTSET in the values.
    return {k: getattr(v, "id", None) if k == "adapter" else str(v) for k, v in callspec.params.items()
            if k != "data"}


def params_from_id(adapters, nodeid: str) -> dict:
    """adapter, op, dtype, device parsed from a test ID such as test_x[torch-layer_norm-float32-cpu]
    (for an item whose worker crashed before it reported its parameters)."""
    test_id = nodeid.rsplit("[", 1)[-1].rstrip("]")
    for adapter in sorted(adapters, key=lambda a: -len(a.id)):
        if test_id.startswith(adapter.id + "-"):
            rest = test_id[len(adapter.id) + 1:].split("-")
            return dict(zip(("op", "dtype", "device"), rest), adapter=adapter.id)
    return {}


def group_by_op_and_dtype(items) -> None:
    """Sort the items by op, dtype and device, stably (test files keep their order within a
    group; items without an op come first). The tests of one op and dtype share a JIT
    framework's executables: together, they find them in memory, and pytest-xdist's
    `--dist load` hands each worker runs of consecutive items, so one worker, not both, needs
    them. The examples do not depend on the order (each item has its own seed)."""
    def group(item):
        params = item_params(item)
        return params.get("op", ""), params.get("dtype", ""), params.get("device", "")

    items.sort(key=group)
