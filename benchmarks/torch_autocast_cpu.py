"""Whether torch.autocast on CPU changes anything for the normalization modules under mixed
precision: float32 modules fed float16/bfloat16 inputs, run plainly and under
torch.autocast("cpu", dtype=input dtype), compared bit for bit (outputs, running statistics,
dx, dweight, dbias). Prints one line per module and dtype; exits 1 if any differs."""
import sys

import torch
import torch.nn as nn

MODULES = {"LayerNorm": (lambda: nn.LayerNorm(64), (8, 64)), "GroupNorm": (lambda: nn.GroupNorm(4, 8), (4, 8, 9)),
           "BatchNorm1d": (lambda: nn.BatchNorm1d(8), (4, 8, 9)),
           "InstanceNorm1d": (lambda: nn.InstanceNorm1d(8, affine=True, track_running_stats=True), (4, 8, 9)),
           "RMSNorm": (lambda: nn.RMSNorm(64), (8, 64))}


def run(module, x, autocast: bool):
    leaf = x.clone().requires_grad_()
    if autocast:
        with torch.autocast("cpu", dtype=x.dtype):
            y = module(leaf)
    else:
        y = module(leaf)
    y.float().sum().backward()
    return [y, leaf.grad] + [p.grad for p in module.parameters()] + list(module.buffers())


def main() -> int:
    torch.manual_seed(0)
    differs = 0
    for name, (build, shape) in MODULES.items():
        for dtype in (torch.float16, torch.bfloat16):
            x = (torch.randn(shape) * 3 + 5).to(dtype)
            plain, cast = build(), build()
            cast.load_state_dict(plain.state_dict())
            same = all(torch.equal(a, b) for a, b in zip(run(plain, x, False), run(cast, x, True)))
            differs += not same
            print(f"{name:15} {str(dtype):15} autocast bit-identical: {same}")
    print(f"torch {torch.__version__}")
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
