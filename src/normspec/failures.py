"""Where failing inputs are saved (.npz) for their reproduction snippets."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def failure_dir() -> Path:
    """NORMSPEC_FAILURE_DIR, or .normspec-failures in the working directory."""
    return Path(os.environ.get("NORMSPEC_FAILURE_DIR", ".normspec-failures"))


def save_case(case, adapter_id: str, device: str) -> Path:
    directory = failure_dir()
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(b"".join(x.tobytes() for x in case.inputs)).hexdigest()[:12]
    path = (directory / f"{adapter_id}-{case.op}-{case.dtype}-{device}-{digest}.npz").resolve()
    case.save(path)
    return path
