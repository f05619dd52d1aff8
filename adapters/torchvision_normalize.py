"""`torchvision`: `torchvision.transforms.v2.Normalize(mean, std)` as a standardization with given
statistics (spec/scalers.md, SCALE-9): apply only, it has no fit and no inverse.

Normalize takes images (..., C, H, W): each sample of (n, F) data is given as an image of F channels
of 1 x 1 pixel, and the mean and std as the per-channel lists Normalize takes.

PyPI's torchvision does not import beside torch 2.13.0 (the version the other torch adapters pin),
so no tox environment runs it yet; it passes up to its findings with torch 2.14.1 and torchvision
0.29.1 (`pip install torch==2.14.1 torchvision==0.29.1`, then `normspec check torchvision`).
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from .base import Adapter, Capabilities, Conventions, Scaler


class TorchvisionNormalize(Scaler):
    def __init__(self, mean, std):
        self._normalize = v2.Normalize(mean=[float(m) for m in mean], std=[float(s) for s in std])

    def transform(self, x):
        image = torch.from_numpy(np.ascontiguousarray(x)).reshape(x.shape[0], x.shape[1], 1, 1)
        return self._normalize(image).reshape(x.shape).numpy()


class TorchvisionAdapter(Adapter):
    id = "torchvision"
    framework = "torchvision"
    conventions = Conventions()
    capabilities = Capabilities(ops=(), dtypes=("float32", "float64"), given_statistics=("standard_scaler",))

    def standard_scaler_given(self, *, mean, std, device):
        return TorchvisionNormalize(mean, std)
