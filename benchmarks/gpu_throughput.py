"""SimCLR training throughput (views per second) of ResNet-18 on CIFAR-shaped data.

It runs the training step of ``experiments.train`` with the project's own pieces: random
uint8 32×32 images held on the device, two kornia views per image made on the device
(``Augment``), the CIFAR ResNet-18 ``Encoder`` with its projection head, ``info_nce`` and
momentum SGD. On CUDA the model and the views are channels-last and the forward pass runs
under bf16 autocast; ``--compile`` adds ``torch.compile``. Nothing is read back to the host
inside the timed loop: the losses are summed on the device and checked once at the end.

    python -m benchmarks.gpu_throughput                       # CUDA if present, else CPU
    python -m benchmarks.gpu_throughput --compile --batch-size 1024
    python -m benchmarks.gpu_throughput --device cpu --batch-size 32 --steps 2 --width 0.25

The same code runs on a CPU (float32, no channels-last), which is how the tests check it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import torch

from clbounds.experiments.training.augment import Augment
from clbounds.experiments.models.encoders import Encoder
from clbounds.experiments.training.optim import build_optimizer
from clbounds.theory.losses import info_nce


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(
    batch_size: int = 512,
    steps: int = 50,
    warmup: int = 10,
    arch: str = "resnet18",
    width: float = 1.0,
    image_size: int = 32,
    augment: str = "abcde",
    temperature: float = 0.5,
    device: str = "auto",
    compile: bool = False,
    seed: int = 0,
    part: str = "step",
) -> dict[str, Any]:
    """Times ``steps`` SimCLR training steps after ``warmup`` untimed ones.

    ``part`` splits the step to find what limits it: ``"step"`` times the whole step,
    ``"augment"`` only the two views, ``"model"`` only the forward, loss, backward and update
    on two fixed views (made once, before the timed loop).

    Returns:
        views_per_s (2·batch_size·steps / seconds), seconds, the final mean loss, and the
        settings (device, dtype, channels_last, compile, sizes).

    Example:
        >>> r = measure_throughput(batch_size=4, steps=1, warmup=0, width=0.0625, image_size=8, device="cpu")
        >>> r["views"], r["views_per_s"] > 0
        (8, True)
    """
    if batch_size < 2 or steps < 1 or warmup < 0:
        raise ValueError(f"need batch_size >= 2, steps >= 1 and warmup >= 0, got {batch_size}, {steps}, {warmup}")
    if part not in ("step", "augment", "model"):
        raise ValueError(f"part must be step, augment or model, got {part!r}")
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    # A dataset of a few batches, uint8 on the device, as the training loop keeps it.
    n = 8 * batch_size
    images = torch.randint(0, 256, (n, 3, image_size, image_size), dtype=torch.uint8, generator=g).to(dev)
    model = Encoder(arch, (3, image_size, image_size), width=width).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer("sgd", model, lr=0.1, momentum=0.9, weight_decay=5e-4)
    views = Augment(augment, image_size=image_size).to(dev)
    order = torch.randperm(n, generator=g).to(dev)

    def project(v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            return model.projector(model(v1)), model.projector(model(v2))

    forward = torch.compile(project) if compile else project

    def make_views(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = (i * batch_size) % (n - batch_size + 1)
        x = images[order[start : start + batch_size]]
        v1, v2 = views(x, g), views(x, g)
        if cuda:
            v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
        return v1, v2

    fixed = make_views(0) if part == "model" else None

    def step(i: int) -> torch.Tensor:
        v1, v2 = fixed if fixed is not None else make_views(i)
        if part == "augment":
            return v1.mean() + v2.mean()
        z1, z2 = forward(v1, v2)
        loss = info_nce(z1.float(), z2.float(), temperature=temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    model.train()
    for i in range(warmup):
        step(i)
    _sync(dev)
    loss_sum = torch.zeros((), device=dev)
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        loss_sum += step(i)
    _sync(dev)
    seconds = time.perf_counter() - t0
    mean_loss = float(loss_sum) / steps
    if not math.isfinite(mean_loss):
        raise RuntimeError(f"the loss became non-finite ({mean_loss}) during the throughput run")
    return {
        "views_per_s": 2 * batch_size * steps / seconds,
        "seconds": seconds,
        "views": 2 * batch_size * steps,
        "loss": mean_loss,
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "autocast": "bf16" if cuda else "off (float32)",
        "channels_last": cuda,
        "compile": compile,
        "part": part,
        "arch": arch,
        "width": width,
        "batch_size": batch_size,
        "image_size": image_size,
        "augment": augment,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--augment", default="abcde")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--part", default="step", choices=["step", "augment", "model"], help="time the whole step, only the views, or only the model on fixed views")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    r = measure_throughput(a.batch_size, a.steps, a.warmup, a.arch, a.width, a.image_size, a.augment, device=a.device, compile=a.compile, part=a.part)
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        print(
            f"{r['views_per_s']:,.0f} views/s  ({r['arch']} width {r['width']:g}, batch {r['batch_size']}, "
            f"{r['image_size']}×{r['image_size']}, {r['device']}, autocast {r['autocast']}, "
            f"channels_last {r['channels_last']}, compile {r['compile']}, part {r['part']}; {r['views']} views in {r['seconds']:.2f} s)"
        )
    return r


if __name__ == "__main__":
    main()
