"""`onnx-reference`: single-node ONNX models run by onnx.reference.ReferenceEvaluator, the
NumPy runtime that ships with onnx. Checked against onnx 1.23.2 with NumPy 2.4.6.

The models (adapters/_onnx_models.py, shared with `onnxruntime`) import opset 23, so each op
is at its latest version: BatchNormalization-15, LayerNormalization-17,
GroupNormalization-21, InstanceNormalization-22, RMSNormalization-23. Every attribute keeps
its default (stash_type = 1 included) except epsilon (always given), axis
(-len(normalized_shape)), num_groups, and BatchNormalization's training_mode and momentum.

BatchNormalization's `training_mode` is the spec's own training/evaluation switch (BN-2 and
BN-3), as torch's module.train()/eval() is: a training call runs the training_mode=1 node,
which normalizes with the batch statistics and outputs the updated running_mean and
running_var (kept by the layer and fed to the next call), and an evaluation call runs the
default training_mode=0 node on the running statistics. So both modes are one adapter, and
reports keep them apart by clause (BN-2, BN-4 for training; BN-3 for evaluation), not by ID.
An inference-only ID (batch_norm_training=False) was tried and cannot pass for the suite's
reasons: test_eps_zero, test_non_finite_propagation, test_half_precision_accumulation and
the scale/shift/zero-mean laws draw training steps for BatchNorm whatever the capability says.

Conventions (declared; normspec.conventions translates): channel axis 1; `momentum` is ONNX's
old-value weight (running <- m*running + (1-m)*batch, default 0.9); the running variance is
the biased (population) variance; a fresh BatchNorm is fed mean 0 and variance 1 (an ONNX
node has no state of its own). eps and momentum are passed as given to onnx.helper, which
stores them as float32 attributes, as every exporter does (1e-5 becomes 9.99999975e-06):
that is what users' models carry, so the adapter does not hide it; normspec compares with
the case's eps and momentum, and the float64 and running-statistics results that the
rounding moves are listed as a finding (spec GEN-1's note asks for the received eps; see the
report of issue 26). default_eps records ONNX's default as stored. A None weight or bias is
fed as ones or zeros (only LayerNormalization's B is optional, and is then left out);
InstanceNormalization keeps no running statistics. No backward pass: ONNX inference graphs
have none, so capabilities.backward_ops is empty.

ReferenceEvaluator has NumPy kernels for BatchNormalization, LayerNormalization,
InstanceNormalization and RMSNormalization, which compute in the input dtype (for float16
and bfloat16 too, ignoring stash_type: see the findings); GroupNormalization-21 has none and
runs the op's context-dependent function body from the schema. An evaluator is built once
per model configuration and kept.
"""
from __future__ import annotations

from importlib.metadata import version

from onnx.reference import ReferenceEvaluator

from ._onnx_common import OnnxAdapter
from .base import Capabilities


class OnnxReferenceAdapter(OnnxAdapter):
    id = "onnx-reference"
    framework = "onnx"
    capabilities = Capabilities(devices=("cpu",))

    def framework_version(self) -> str:
        return f"{super().framework_version()} (onnx.reference.ReferenceEvaluator, numpy {version('numpy')})"

    def _prepare(self, model, device):
        evaluator = ReferenceEvaluator(model)
        return lambda feeds: evaluator.run(None, feeds)

