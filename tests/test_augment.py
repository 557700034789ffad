import pytest
import torch

from clbounds.experiments.training.augment import Augment, parse_augment


def _images(n=8, s=16):
    return torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_letters_compose_in_simclr_order_and_reject_unknown():
    assert parse_augment("abcde") == "aedcb"
    assert parse_augment("") == ""
    with pytest.raises(ValueError, match="unknown letter"):
        parse_augment("af")
    with pytest.raises(ValueError, match="repeated"):
        parse_augment("aa")


def test_views_are_reproducible_from_the_generator_and_leave_global_rng_alone():
    aug, x = Augment("abcde", 16), _images()
    state = torch.get_rng_state()
    v1 = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    v2 = aug(x, torch.Generator().manual_seed(3))
    v3 = aug(x, torch.Generator().manual_seed(4))
    assert torch.equal(v1, v2) and not torch.equal(v1, v3)
    assert v1.shape == (8, 3, 16, 16) and v1.min() >= 0 and v1.max() <= 1


def test_empty_spec_is_identity_in_unit_range():
    x = _images()
    assert torch.equal(Augment("", 16)(x, torch.Generator()), x.float() / 255)


def test_flip_only_gives_the_image_or_its_mirror():
    x = _images()
    v = Augment("e", 16)(x, torch.Generator().manual_seed(0))
    xf = x.float() / 255
    same = (v == xf).flatten(1).all(1)
    mirrored = (v == xf.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and mirrored.any() and same.any()


def test_grayscale_views_have_equal_channels_where_applied():
    v = Augment("c", 16)(_images(64), torch.Generator().manual_seed(0))
    gray = (v[:, 0] == v[:, 1]).flatten(1).all(1) & (v[:, 1] == v[:, 2]).flatten(1).all(1)
    assert 0 < gray.float().mean() < 0.6  # p = 0.2


def test_color_strength_zero_leaves_colors_unchanged():
    x = _images()
    v = Augment("d", 16, color_strength=0.0)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(v, x.float() / 255, atol=1e-5)
    with pytest.raises(ValueError, match="color_strength"):
        Augment("d", 16, color_strength=-1)


def test_cuda_crop_draws_the_same_boxes_and_resamples_them_alike():
    # The CUDA path (one batched warp) must crop the same boxes as the CPU path (slice and
    # resize per image); run both on the CPU from one seed. On a smooth image the two
    # interpolations agree up to sub-pixel rounding.
    aug = Augment("a", 32)
    ramp = torch.linspace(0, 1, 32)
    x = (ramp[None, :] * ramp[:, None]).expand(16, 3, 32, 32).contiguous()
    torch.manual_seed(5)
    sliced = aug.transforms(x)
    boxes = aug.transforms[0]._params["src"].clone()
    torch.manual_seed(5)
    resampled = aug.transforms_cuda(x)
    assert torch.equal(aug.transforms_cuda[0]._params["src"], boxes)
    assert (sliced - resampled).abs().mean() < 0.02 and (sliced - resampled).abs().max() < 0.1
    assert aug.transforms_cuda[0].flags["cropping_mode"] == "resample" and aug.transforms[0].flags["cropping_mode"] == "slice"
