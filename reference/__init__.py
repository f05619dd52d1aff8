"""normspec.reference: the executable NumPy definitions, one function per op.

Each computes in float64 from the spec's named steps and is the oracle the suite
compares implementations against. Results come in the input dtype (NUM-2.2);
pass exact=True for the float64 values.
"""
from ._running import RunningResult
from ._steps import Steps
from .batch_norm import batch_norm, batch_norm_vjp
from .group_norm import group_norm, group_norm_vjp
from .instance_norm import instance_norm, instance_norm_vjp
from .layer_norm import layer_norm, layer_norm_vjp
from .rms_norm import rms_norm, rms_norm_vjp
from .sync_batch_norm import ReplicatedResult, sync_batch_norm, sync_batch_norm_vjp
from .minmax_scaler import FittedMinMaxScaler, minmax_scaler
from .standard_scaler import FittedStandardScaler, standard_scaler

__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm", "RunningResult", "Steps",
           "batch_norm_vjp", "layer_norm_vjp", "group_norm_vjp", "instance_norm_vjp", "rms_norm_vjp",
           "sync_batch_norm", "sync_batch_norm_vjp", "ReplicatedResult",
           "standard_scaler", "minmax_scaler", "FittedStandardScaler", "FittedMinMaxScaler"]
