"""The test case: everything one check needs, in the spec's canonical form, and its .npz form.

A Case holds the op, the dtype, the inputs of each step (one step for ops without
state), whether each step trains, the op's attributes and parameters. normspec.driver
runs it on an adapter (normspec.conventions translates it) and checks it against the
reference (normspec.oracle).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from normspec.dtypes import numpy_dtype


@dataclass
class Case:
    op: str
    dtype: str
    inputs: list  # one array per step, in the adapter's layout
    training: list  # one bool per step
    eps: float
    attrs: dict = field(default_factory=dict)  # normalized_shape / num_groups
    params: dict = field(default_factory=dict)  # weight, bias, running_mean, running_var (or None)
    momentum: float | None = 0.1  # the spec's new-batch weight alpha (BN-4.1); None = cumulative (BN-4.2)
    channel_axis: int = 1
    exact_statistics: bool = False  # NUM-1.4 inputs
    family: str = ""
    cotangent: np.ndarray | None = None  # dy of a backward case (normspec.backward), the input's shape and dtype
    # The dtype of the affine parameters and running statistics (NUM-2.3), None for the input's: float32 with
    # float16 or bfloat16 inputs is mixed precision.
    param_dtype: str | None = None

    @property
    def shape(self) -> tuple:
        return self.inputs[0].shape

    @property
    def parameter_dtype(self) -> str:
        """The name of the parameters' and running statistics' dtype (NUM-2.3)."""
        return self.param_dtype or self.dtype

    @property
    def mixed(self) -> bool:
        """Whether the parameters' dtype differs from the input's (mixed precision, NUM-2.3)."""
        return self.parameter_dtype != self.dtype

    def save(self, path) -> None:
        """Write the case as .npz (loads without pickle)."""
        arrays = {f"input_{i}": x.astype(np.float64) for i, x in enumerate(self.inputs)}
        arrays.update({f"param_{k}": v.astype(np.float64) for k, v in self.params.items() if v is not None})
        if self.cotangent is not None:
            arrays["cotangent"] = self.cotangent.astype(np.float64)
        meta = repr({"op": self.op, "dtype": self.dtype, "training": self.training, "eps": self.eps,
                     "attrs": self.attrs, "momentum": self.momentum, "channel_axis": self.channel_axis,
                     "exact_statistics": self.exact_statistics, "family": self.family,
                     "param_dtype": self.param_dtype, "params": sorted(self.params)})
        np.savez(path, meta=np.array(meta), **arrays)

    @classmethod
    def load(cls, path) -> "Case":
        import ast
        with np.load(path, allow_pickle=False) as data:
            meta = ast.literal_eval(str(data["meta"]))
            dtype = numpy_dtype(meta["dtype"])
            param_dtype = numpy_dtype(meta.get("param_dtype") or meta["dtype"])  # cases saved before 0.5 have none
            inputs = [data[f"input_{i}"].astype(dtype) for i in range(len(meta["training"]))]
            params = {k: data[f"param_{k}"].astype(param_dtype) if f"param_{k}" in data else None
                      for k in meta.pop("params")}
            cotangent = data["cotangent"].astype(dtype) if "cotangent" in data else None
        return cls(inputs=inputs, params=params, cotangent=cotangent, **meta)
