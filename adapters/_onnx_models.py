"""Single-node ONNX models of the five normalization ops, built with onnx.helper, and the
feeds that run them: shared by the `onnx-reference` and `onnxruntime` adapters.

One model per configuration (`ModelConfig`): the op at its latest version in onnx 1.23,
the dtype, the declared dims of X, the attributes (float attributes are float32 in ONNX,
so `epsilon` and `momentum` are stored rounded to float32, as every exporter stores them)
and which inputs and outputs the node has. X's dims are symbolic (as an exporter writes
dynamic axes), except LayerNorm's and RMSNorm's normalized dims, which are static: with
`axis` they are how an ONNX model carries normalized_shape. Every tensor the node reads is a
graph input: scale, bias and running statistics are fed per call rather than stored as
initializers, so that one model (and one session) serves every parameter value.

An absent weight or bias (normspec's None) is fed as ones or zeros, the identity of NORM-6,
as exporters write an affine-free layer: only LayerNormalization's `B` is optional in ONNX,
and there the input is left out instead.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, defs, helper

from normspec.dtypes import numpy_dtype

# The opset the models import: the newest of the five ops' latest versions in onnx 1.23, so that
# each op resolves to that version (checked below against the installed onnx's schemas).
OPSET = 23
NODES = {"batch_norm": ("BatchNormalization", 15), "layer_norm": ("LayerNormalization", 17),
         "group_norm": ("GroupNormalization", 21), "instance_norm": ("InstanceNormalization", 22),
         "rms_norm": ("RMSNormalization", 23)}
ELEMENT_TYPES = {"float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
                 "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}
# The IR version the onnx package pairs with OPSET (a newer IR than the runtimes read buys nothing here).
IR_VERSION = helper.find_min_ir_version_for([helper.make_opsetid("", OPSET)])

for _op, (_name, _version) in NODES.items():
    if defs.get_schema(_name, OPSET).since_version != _version:  # a newer onnx moved an op: recheck the adapter
        raise ImportError(f"onnx {onnx.__version__} resolves {_name} at opset {OPSET} to version "
                          f"{defs.get_schema(_name, OPSET).since_version}, not the {_version} these adapters were checked with")


class ModelConfig(NamedTuple):
    """What one model is: op, dtype name, the declared dims of X (a name for a symbolic dim,
    an int for a static one), node attributes (name, value) sorted, the node's input names
    (an absent optional input is left out), its output names, and the rank of the parameters."""
    op: str
    dtype: str
    x_dims: tuple
    attributes: tuple
    inputs: tuple
    outputs: tuple
    parameter_rank: int = 1


def config(op, dtype, rank, *, eps, bias=True, normalized_shape=None, num_groups=None, momentum=None,
           training=False) -> ModelConfig:
    """The model of `op` for inputs of `dtype` and `rank`.

    normalized_shape (LayerNorm, RMSNorm): ONNX has no such argument; the node's `axis` is
    -len(normalized_shape) (an empty shape, which has no negative form, is axis = rank, past
    the last axis) and X declares the normalized dims as static (as an exported model
    declares its feature dims), so that the model carries the whole normalized_shape; the
    other dims are symbolic. num_groups (GroupNorm); momentum (the old-value weight) and
    training (BatchNorm training_mode=1, whose node also outputs the updated running
    statistics). bias=False leaves out LayerNormalization's optional B (the other ops' bias is
    fed as zeros instead).
    """
    # Attribute values go to onnx.helper as given (its make_attribute infers their type): a value
    # ONNX cannot hold is for onnx to reject, not for this module to convert.
    attributes = {"epsilon": eps}
    inputs, outputs = ("X", "scale", "B"), ("Y",)
    x_dims, parameter_rank = [f"d{i}" for i in range(rank)], 1
    if op in ("layer_norm", "rms_norm"):
        shape = tuple(int(d) for d in normalized_shape)
        attributes["axis"] = -len(shape) if shape else rank
        if 0 < len(shape) <= rank:
            x_dims[rank - len(shape):] = shape
        parameter_rank = len(shape)
        # Without a bias the trailing optional input is left out, not named "": onnxruntime 1.32's
        # extended graph optimizations crash (SIGSEGV) creating a session for LayerNormalization(X, scale, "").
        inputs = ("X", "scale", "B") if op == "layer_norm" and bias else ("X", "scale")
    elif op == "group_norm":
        attributes["num_groups"] = num_groups
    elif op == "batch_norm":
        inputs += ("input_mean", "input_var")
        if training:
            attributes.update(training_mode=1, momentum=momentum)
            outputs += ("running_mean", "running_var")
    return ModelConfig(op, str(dtype), tuple(x_dims), tuple(sorted(attributes.items())), inputs, outputs,
                       parameter_rank)


def build(cfg: ModelConfig) -> onnx.ModelProto:
    """The single-node model of `cfg`, not run through onnx.checker: what a model may hold is for
    each runtime to check (onnxruntime validates and infers shapes when it loads a model;
    ReferenceEvaluator does neither)."""
    name, _ = NODES[cfg.op]
    element = ELEMENT_TYPES[cfg.dtype]
    # X and Y share their dims; the parameters' dims are left unknown, as a parameter's shape is
    # for the op to check (an initializer's shape is whatever the exporter wrote).
    shapes = {"X": list(cfg.x_dims), "Y": list(cfg.x_dims)}
    parameter_dims = [None] * cfg.parameter_rank
    node = helper.make_node(name, list(cfg.inputs), list(cfg.outputs), **dict(cfg.attributes))
    graph = helper.make_graph(
        [node], f"{cfg.op}_{cfg.dtype}",
        [helper.make_tensor_value_info(i, element, shapes.get(i, parameter_dims)) for i in cfg.inputs],
        [helper.make_tensor_value_info(o, element, shapes.get(o, parameter_dims)) for o in cfg.outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="normspec")
    return model


def feeds(cfg: ModelConfig, x, *, weight, bias, running_mean=None, running_var=None,
          parameter_shape) -> dict:
    """The graph inputs of one call: name -> NumPy array in the model's dtype. A None weight
    (bias) becomes ones (zeros) of `parameter_shape`; the arrays given are never written."""
    dtype = numpy_dtype(cfg.dtype)
    values = {"X": x, "scale": np.ones(parameter_shape, dtype) if weight is None else weight,
              "B": np.zeros(parameter_shape, dtype) if bias is None else bias,
              "input_mean": running_mean, "input_var": running_var}
    return {name: values[name] for name in cfg.inputs}


def float32_attribute(value: float) -> float:
    """The value a float attribute holds once stored (TensorProto's AttributeProto.f is float32)."""
    return float(np.float32(value))
