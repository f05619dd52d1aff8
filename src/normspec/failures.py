"""Reproducing failures: a copy-paste snippet for every failing case, and the case
saved as .npz (no pickle) where its arrays are too large to print."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from normspec.dtypes import numpy_spelling

_PRINTABLE_ELEMENTS = 64


def failure_dir() -> Path:
    """NORMSPEC_FAILURE_DIR (set by --normspec-report to DIR/failures), else .normspec-failures."""
    return Path(os.environ.get("NORMSPEC_FAILURE_DIR", ".normspec-failures")).resolve()


def case_name(case, adapter_id: str, device: str) -> str:
    """A stable file name for a case: adapter, op, dtype, device and a hash of the inputs."""
    arrays = case.inputs + ([] if case.cotangent is None else [case.cotangent])
    digest = hashlib.sha1(b"".join(x.tobytes() for x in arrays) + repr(case.params.keys()).encode())
    safe_adapter = "".join(c if c.isalnum() or c in "-_" else "_" for c in adapter_id)
    dtypes = f"{case.dtype}-{case.param_dtype}" if case.mixed else case.dtype
    return f"{safe_adapter}-{case.op}-{dtypes}-{device}-{digest.hexdigest()[:12]}"


def _printable(case) -> bool:
    return sum(x.size for x in case.inputs) * (1 if case.cotangent is None else 2) <= _PRINTABLE_ELEMENTS


def repro_snippet(adapter_id: str, case, device: str, *, law: tuple | None = None) -> str:
    """Python that runs `case` again on the adapter and checks it against the reference.
    For a law, `law` = (other case, index): the snippet prints both outputs' largest
    difference, y(case) against y(other)[index], which the law says is within the bound."""
    from normspec.adapters import LOADED
    target = LOADED.get(adapter_id, adapter_id)
    backward = case.cotangent is not None
    run = "run_vjp_case" if backward else "run_case"
    head = ("import numpy as np, ml_dtypes\nfrom normspec.adapters import load_adapter\n"
            + "from normspec.cases import Case\n"
            + ("from normspec.driver import observe\n" if law is not None
               else "from normspec.backward import run_vjp_case\n" if backward
               else "from normspec.driver import run_case\n"))
    body = _case_code("case", case, adapter_id, device)
    if law is None:
        return head + body + f"{run}(load_adapter({target!r}), case, {device!r})"
    other, index = law
    return (head + body + _case_code("other", other, adapter_id, device)
            + f"adapter = load_adapter({target!r})\n"
            + f"y, y_other = observe(adapter, case, {device!r}), observe(adapter, other, {device!r}){index}\n"
            + "print('largest difference:', np.nanmax(np.abs(y.astype(np.float64) - y_other.astype(np.float64))))"
            + "  # the law: equal within the bound")


def array_source(a, dtype: str | None = None) -> str:
    """Python source that rebuilds the array `a` (None: "None"), NaN and infinities as np.nan and
    np.inf, in the dtype named `dtype` (default: a's own)."""
    if a is None:
        return "None"
    a = np.asarray(a)
    values = re.sub(r"\b(nan|inf)\b", r"np.\1", repr(a.astype(np.float64).tolist()))
    return f"np.array({values}, dtype={numpy_spelling(dtype or a.dtype.name)})"


def _case_code(name: str, case, adapter_id: str, device: str) -> str:
    """`name = Case(...)` with the arrays inline, or `Case.load(...)` of the saved file."""
    if not _printable(case):
        return f"{name} = Case.load({str(failure_dir() / (case_name(case, adapter_id, device) + '.npz'))!r})\n"

    def array(a, dtype=case.dtype):
        return array_source(a, dtype)

    mixed = f", param_dtype={case.param_dtype!r}" if case.mixed else ""
    return (f"{name} = Case(op={case.op!r}, dtype={case.dtype!r}{mixed}, eps={case.eps!r}, attrs={case.attrs!r},\n"
            f"    inputs=[{', '.join(array(x) for x in case.inputs)}],\n"
            f"    training={case.training!r}, momentum={case.momentum!r}, channel_axis={case.channel_axis},\n"
            f"    exact_statistics={case.exact_statistics}, family={case.family!r},\n"
            "    params={" + ", ".join(f"{k!r}: {array(v, case.parameter_dtype)}" for k, v in case.params.items()) + "}"
            + (f",\n    cotangent={array(case.cotangent)})\n" if case.cotangent is not None else ")\n"))


def save(context, *, always: bool) -> Path | None:
    """Write the failing case (.npz; a law's other case too) and its snippet (.py); only for
    unprintable cases unless `always` (a report directory was asked for)."""
    case = context.case
    if case is None:
        return None
    cases = [case] + ([context.law[0]] if context.law else [])
    if all(_printable(c) for c in cases) and not always:
        return None
    directory = failure_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for each in cases:
        each.save(directory / f"{case_name(each, context.adapter, context.device)}.npz")
    stem = directory / case_name(case, context.adapter, context.device)
    stem.with_suffix(".py").write_text(repro_snippet(context.adapter, case, context.device, law=context.law) + "\n",
                                       encoding="utf-8")
    return stem
