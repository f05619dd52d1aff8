"""What the TensorFlow-based adapters (`keras`, `tf-nn`) share: a quiet TensorFlow
import, the device scope and status, the NumPy <-> tensor conversion, and the backward
pass through tf.GradientTape (`tape_vjp`).

Importing this module imports TensorFlow, so a missing TensorFlow surfaces as the
ImportError that `load_adapter` turns into an install hint.
"""
from __future__ import annotations

import os

import numpy as np

# Keras' conventions, which the tf-nn compositions follow as users copy them from Keras
# (tf.nn itself has no default eps); both cover every op forward and backward.
from ._keras_common import CAPABILITIES, CONVENTIONS, feature_shape  # noqa: F401  (imports no Keras)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before the import: no startup INFO/WARNING lines


def _import_tensorflow():
    """Import TensorFlow with file descriptor 2 on /dev/null: TensorFlow 2.21 writes its absl
    startup lines (the oneDNN notice) whatever TF_CPP_MIN_LOG_LEVEL says. Python errors
    still propagate."""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 to silence
        import tensorflow
        return tensorflow
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow


tf = _import_tensorflow()
tf.get_logger().setLevel("ERROR")

_TF_DEVICE = {"cpu": "/CPU:0", "cuda": "/GPU:0"}


def tf_version() -> str:
    """The TensorFlow version, whichever distribution (tensorflow, tensorflow-cpu, ...) installed it."""
    return f"tensorflow {tf.__version__}"


def device_status() -> dict:
    """cpu always; cuda only where TensorFlow sees a GPU."""
    gpu = None if tf.config.list_physical_devices("GPU") else \
        "cuda: not available (tf.config.list_physical_devices('GPU') is empty)"
    return {"cpu": None, "cuda": gpu}


def device_scope(device: str):
    """The `tf.device` context that places the ops (and variables) of one call."""
    return tf.device(_TF_DEVICE[device])


def to_tensor(array):
    """A NumPy array (bfloat16 as ml_dtypes.bfloat16) as a tensor of the same dtype; None stays None."""
    return None if array is None else tf.convert_to_tensor(np.asarray(array))


def to_numpy(tensor) -> np.ndarray:
    """A tensor or variable as a NumPy array of the dtype TensorFlow holds it in
    (TensorFlow's bfloat16 is ml_dtypes.bfloat16)."""
    return np.asarray(tf.convert_to_tensor(tensor).numpy())


def run(function, device, *arrays, **attrs) -> np.ndarray:
    """function(*tensors, **attrs) on `arrays` as tensors (None stays None), placed on `device`,
    as a NumPy array."""
    with device_scope(device):
        return to_numpy(function(*map(to_tensor, arrays), **attrs))


def tape_vjp(forward, dy, device, **sources) -> dict:
    """The vector-Jacobian product of y = forward(**sources) for the cotangent dy, through
    TensorFlow's own autodiff (tf.GradientTape): {name: gradient as a NumPy array}.

    sources: name -> a NumPy array (passed to forward as a watched tensor), a variable that
    forward reads itself (the tape watches the trainable variables it reads), or None (passed
    as None; gradient None). A source y does not depend on gets None (TensorFlow's answer).
    Whatever forward uses besides the sources (running statistics) is not differentiated.
    """
    with device_scope(device):
        inputs = {name: to_tensor(value) if isinstance(value, np.ndarray) else value
                  for name, value in sources.items()}
        watched = {name: value for name, value in inputs.items() if value is not None}
        with tf.GradientTape() as tape:
            tape.watch([value for value in watched.values() if isinstance(value, tf.Tensor)])
            y = forward(**inputs)
        gradients = tape.gradient(y, watched, output_gradients=to_tensor(dy))
        return {name: None if gradients.get(name) is None else to_numpy(gradients[name]) for name in sources}
