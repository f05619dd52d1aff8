"""`torch-sync`: `torch.nn.SyncBatchNorm` (through `convert_sync_batchnorm`, as users build it) under
`torch.distributed` with one process per replica. Checked against torch 2.13.0 (CPU build).

Nothing of it runs on CPU: torch rejects CPU inputs. With a gloo process group of 2 processes,
a SyncBatchNorm's training call raises `ValueError: SyncBatchNorm expected input tensor to be on
GPU or XPU or privateuseone`, and DistributedDataParallel refuses a CPU module holding one
(`ValueError: SyncBatchNorm layers only work with GPU modules`). `device_status` reports the CPU
items "not run" naming that rule. The CUDA run (NCCL, R GPUs, a process per replica) is not written
yet: the suite's replicated-layer interface would drive those processes from the test's process.
It needs a machine with at least two GPUs: NCCL (2.5 and later) refuses two ranks on one GPU
("Duplicate GPU detected", ncclInvalidUsage; NVIDIA/nccl#418), and the device machines lent so far
have one.
"""
from __future__ import annotations

import torch

from .base import Adapter, Capabilities
from .torch_modules import TorchAdapter

CPU_RULE = ("cpu: torch.nn.SyncBatchNorm rejects CPU inputs (torch 2.13: 'SyncBatchNorm expected input tensor to "
            "be on GPU or XPU or privateuseone'; DistributedDataParallel: 'SyncBatchNorm layers only work with GPU "
            "modules')")


class TorchSyncAdapter(Adapter):
    id = "torch-sync"
    framework = "torch"
    conventions = TorchAdapter.conventions
    capabilities = Capabilities(ops=(), devices=("cpu", "cuda"), dtypes=("float32", "float64"),
                                data_parallel=("sync_batch_norm",))

    def device_status(self) -> dict:
        cuda = ("cuda: not available (torch.cuda.is_available() is False)" if not torch.cuda.is_available()
                else "cuda: the multi-process NCCL run of torch-sync is not written yet (it needs 2+ GPUs: NCCL "
                     "refuses two ranks on one GPU)")
        return {"cpu": CPU_RULE, "cuda": cuda}
