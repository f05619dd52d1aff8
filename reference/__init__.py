"""normspec.reference: the executable NumPy definitions, one function per op.

Each computes in float64 from the spec's named steps and is the oracle the suite
compares implementations against. Results come in the input dtype (NUM-2.2);
pass exact=True for the float64 values.
"""
from ._running import RunningResult
from ._steps import Steps
from .batch_norm import batch_norm
from .group_norm import group_norm
from .instance_norm import instance_norm
from .layer_norm import layer_norm
from .rms_norm import rms_norm

__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm", "RunningResult", "Steps"]
