"""Measure and bound an encoder that clbounds did not train (docs/bring_your_own_encoder.md).

Step 1 stands in for "someone else's training run": a ResNet-18 with torchvision's module
names and a SimCLR head, trained by a plain PyTorch loop, saved as solo-learn saves a
checkpoint (a Lightning dict whose state_dict has backbone.* and projector.*). Nothing in it
uses clbounds' training code. Steps 2-3 are what you would do with your own file.

    python docs/examples/byo_encoder.py /tmp/byo       # writes /tmp/byo/simclr-rn18.ckpt, then measures it in Python
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

try:  # the real thing when it is installed; clbounds' copy has the same module names
    from torchvision.models import resnet18

    def backbone() -> nn.Module:
        net = resnet18()
        net.fc = nn.Identity()
        return net
except ImportError:
    from clbounds.experiments.models.external import TorchvisionResNet

    def backbone() -> nn.Module:
        return TorchvisionResNet("resnet18")


IMAGENET = (torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))


def train_elsewhere(out: Path, steps: int = 40) -> Path:
    """A few SimCLR steps in a plain loop: two crops-and-flips of each image, NT-Xent at tau 0.5."""
    from clbounds.experiments.data import load_dataset  # only the data: the embedded synthetic set

    torch.manual_seed(0)
    data = load_dataset("synthetic", image_size=32, n_train=1000, n_test=500)
    net, head = backbone(), nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 64))  # solo-learn's SimCLR head
    opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.1, momentum=0.9)

    def view(x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255
        i, j = torch.randint(0, 9, (2,))
        x = F.interpolate(x[:, :, i : i + 24, j : j + 24], size=32, mode="bilinear", align_corners=False)
        return torch.where(torch.rand(x.shape[0], 1, 1, 1) < 0.5, x.flip(3), x)

    for step in range(steps):
        x = data.x_train[torch.randint(0, 1000, (128,))]
        z = F.normalize(head(net((torch.cat([view(x), view(x)]) - IMAGENET[0]) / IMAGENET[1])), dim=1)
        sim = z @ z.T / 0.5
        sim.fill_diagonal_(float("-inf"))
        loss = F.cross_entropy(sim, torch.arange(256).roll(128))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0:
            print(f"step {step}: NT-Xent {loss.item():.3f}")
    state = {f"backbone.{k}": v for k, v in net.state_dict().items()} | {f"projector.{k}": v for k, v in head.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "simclr-rn18.ckpt"
    torch.save({"epoch": 0, "global_step": steps, "pytorch-lightning_version": "2.1.2", "state_dict": state}, path)
    return path


def measure_in_python(net: nn.Module, head: nn.Module) -> None:
    """Step 3 without a checkpoint: the model object itself, normalisation inside."""
    import clbounds

    class Normalised(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x - IMAGENET[0]) / IMAGENET[1])

    rows = clbounds.measure(Normalised(net), "synthetic", terms=["geometry", "sigma", "losses", "bounds"], projector=head, method="simclr",
                            data_options={"image_size": 32, "n_train": 1000, "n_test": 500}, n_samples=128, views=4, batch_size=64)
    for check in clbounds.bounds.evaluate_all(rows.terms):
        if check.holds is not None:
            print(f"{check.theorem:40s} bound {check.bound:10.4g}  measured {check.measured:8.4g}  {clbounds.bounds.verdict(check)}")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "byo")
    ckpt = train_elsewhere(out)
    print(f"wrote {ckpt}")
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    net, head = backbone(), nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 64))
    net.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("backbone.")})
    head.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("projector.")})
    measure_in_python(net.eval(), head.eval())
