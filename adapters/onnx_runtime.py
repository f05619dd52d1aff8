"""`onnxruntime`: the single-node ONNX models of `onnx-reference` (adapters/_onnx_models.py)
run by onnxruntime.InferenceSession on the CPU execution provider ("cpu") and on the CUDA
execution provider ("cuda", listed before the CPU provider as users list it, where the
installed onnxruntime has it; the CPU-only wheel reports it as not available).

Checked against onnxruntime 1.32.0 (CPU build) with models built by onnx 1.23.2. Models,
conventions and BatchNormalization's training_mode handling are those of `onnx-reference`
(adapters/onnx_reference.py): opset 23 (BatchNormalization-15, LayerNormalization-17,
GroupNormalization-21, InstanceNormalization-22, RMSNormalization-23); a training call runs
the training_mode=1 node and keeps its running_mean/running_var outputs, an evaluation call
the default training_mode=0 node; channel axis 1, old-value momentum, biased running
variance; eps and momentum stored as float32 attributes; a None weight/bias fed as
ones/zeros; no backward pass (inference graphs).

Sessions use the default SessionOptions (graph optimizations at ORT_ENABLE_ALL) except the
thread counts, set to 1: the suite's worker processes are the parallelism, and a pool per
cached session would keep idle threads spinning on the same cores. The CPU kernels
split work by rows, channels or samples, never within one slice's reduction: outputs were
identical with 1, 2, 4 and 16 threads (every op, float16/float32/float64). A session is
created once per model configuration (op, dtype, declared dims, attributes) and device, and
kept; a configuration whose session cannot be created raises the same error on every call.
bfloat16 tensors go through OrtValues over uint16 buffers (onnxruntime's NumPy conversion has
no bfloat16).

What the CPU provider runs (its kernel registry, onnxruntime.capi._pybind_state.
get_all_opkernel_def(), and the graphs written by SessionOptions.optimized_model_filepath):

- a kernel for LayerNormalization (float32, float64, float16, bfloat16; U = float, the
  statistics of stash_type = 1), RMSNormalization (float32, float64, float16),
  BatchNormalization (float32, float64; training_mode=1 included) and InstanceNormalization
  (float32);
- float16 BatchNormalization and InstanceNormalization run the float32 kernel between Cast
  nodes that onnxruntime inserts (its fp16 fallback), running statistics included;
- GroupNormalization-21 has no kernel: onnxruntime inlines the function body of the ONNX
  schema (Cast to stash_type, Reshape, ReduceMean, Mul, Sub, Sqrt, Div, Add) in every dtype;
  bfloat16 RMSNormalization, outside its kernel's types, is expanded the same way;
- no kernel at all, so the session cannot be created (NOT_IMPLEMENTED): float64
  InstanceNormalization, and bfloat16 BatchNormalization, InstanceNormalization,
  GroupNormalization and RMSNormalization (their bodies' Mul). The ONNX schemas allow every
  one of these dtypes, so they are findings, not narrowed capabilities.

Not a conformance result, seen while building the adapter: onnxruntime 1.32.0 crashes
(SIGSEGV) creating a session, at the default optimization level, for
LayerNormalization(X, Scale, "") with the optional bias named "" (microsoft/onnxruntime#18967
reported the same crash for torch's LayerNorm(bias=False) export, closed as fixed); the
models here leave the trailing input out instead.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnxruntime as ort
from onnx import TensorProto

from ._onnx_common import OnnxAdapter
from .base import Capabilities

_PROVIDERS = {"cpu": ["CPUExecutionProvider"],
              # The CUDA provider as users list it: nodes without a CUDA kernel fall back to the CPU.
              "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


class OnnxRuntimeAdapter(OnnxAdapter):
    id = "onnxruntime"
    framework = "onnxruntime"
    capabilities = Capabilities(devices=("cpu", "cuda"))

    def device_status(self):
        available = ort.get_available_providers()
        return {device: None if _PROVIDERS[device][0] in available
                else f"{device}: {_PROVIDERS[device][0]} is not among onnxruntime.get_available_providers() "
                     f"({', '.join(available)})"
                for device in self.capabilities.devices}

    def _prepare(self, model, device):
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: the fp16 fallback's Cast insertion warns on every session
        # One thread, no pool: the suite's worker processes are the parallelism, and a pool per cached
        # session would keep idle (by default spinning) threads. The kernels here split work by rows,
        # channels or samples, never one slice's reduction, so results do not depend on the count.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=_PROVIDERS[device])
        if model.graph.input[0].type.tensor_type.elem_type == TensorProto.BFLOAT16:
            return lambda feeds: _run_bfloat16(session, feeds)
        return lambda feeds: session.run(None, feeds)


def _run_bfloat16(session, feeds) -> list:
    """session.run for bfloat16 tensors, which onnxruntime's NumPy conversion lacks (either way):
    inputs and outputs are OrtValues of ONNX type BFLOAT16 over uint16 buffers holding the same
    bits, bound with an IOBinding; the outputs are written into NumPy buffers shaped like X
    (Y) or like the running statistics."""
    def ort_value(array):
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(array, TensorProto.BFLOAT16)

    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_ortvalue_input(name, ort_value(np.ascontiguousarray(array).view(np.uint16)))
    buffers = []
    for output in session.get_outputs():
        shape = feeds["X"].shape if output.name == "Y" else feeds["input_mean"].shape
        buffers.append(np.empty(shape, np.uint16))
        binding.bind_ortvalue_output(output.name, ort_value(buffers[-1]))
    session.run_with_iobinding(binding)
    return [buffer.view(ml_dtypes.bfloat16) for buffer in buffers]
