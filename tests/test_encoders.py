import pytest
import torch

from clbounds.experiments.models.encoders import ARCHITECTURES, Encoder


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_shapes_width_and_projection(arch):
    small = Encoder(arch, (3, 16, 16), width=0.25, proj_hidden=16, proj_dim=8)
    big = Encoder(arch, (3, 16, 16), width=0.5, proj_hidden=16, proj_dim=8)
    x = torch.rand(4, 3, 16, 16)
    h = small(x)
    assert h.shape == (4, small.feature_dim) and small.projector(h).shape == (4, 8)
    assert big.feature_dim == 2 * small.feature_dim
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())


def test_normalisation_sits_inside_forward():
    enc = Encoder("mlp", (3, 4, 4), width=0.1, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    raw = torch.nn.Sequential(*enc.backbone).eval()
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(enc(x), raw((x - 0.5) / 0.25))


def test_resnet18_keeps_cifar_resolution_in_the_stem():
    enc = Encoder("resnet18", (3, 32, 32), width=0.125)
    stem = enc.backbone[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in enc.modules())
    assert sum(1 for m in enc.modules() if m.__class__.__name__ == "BasicBlock") == 8


def test_unknown_architecture_and_bad_width():
    with pytest.raises(ValueError, match="unknown encoder 'vit'"):
        Encoder("vit", (3, 8, 8))
    with pytest.raises(ValueError, match="width must be > 0"):
        Encoder("mlp", (3, 8, 8), width=0)
