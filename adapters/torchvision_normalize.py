"""`torchvision`: `torchvision.transforms.v2.Normalize(mean, std)` as a standardization with given
statistics (spec/scalers.md, SCALE-9): apply only, it has no fit and no inverse.

Normalize takes images (..., C, H, W): each sample of (n, F) data is given as an image of F channels
of 1 x 1 pixel, and the mean and std as the per-channel lists Normalize takes.

Not verified: written where torchvision from PyPI does not import beside torch 2.13.0, so this adapter
was never run and has no expectations file yet; `normspec adapters` lists it as not available there.
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
