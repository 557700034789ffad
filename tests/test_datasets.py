import pytest
import torch

from clbounds.experiments.data import load_dataset
from clbounds.experiments.data.synthetic import SyntheticGenerator


def test_synthetic_is_deterministic_and_balanced():
    a = load_dataset("synthetic", image_size=16, n_train=100, n_test=40, seed=3)
    b = load_dataset("synthetic", image_size=16, n_train=100, n_test=40, seed=3)
    c = load_dataset("synthetic", image_size=16, n_train=100, n_test=40, seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.x_train.dtype == torch.uint8 and a.x_train.shape == (100, 3, 16, 16)
    assert torch.bincount(a.y_train).tolist() == [10] * 10


def test_synthetic_without_nuisance_is_the_template():
    gen = SyntheticGenerator(num_classes=3, image_size=8, shift=0, contrast=0.0, noise=0.0, seed=0)
    s = gen.sample(torch.tensor([0, 1, 2, 1]), torch.Generator().manual_seed(0))
    expected = (gen.templates[s.y].clamp(0, 1) * 255).round().to(torch.uint8)
    assert torch.equal(s.x, expected)


def test_synthetic_shift_is_a_circular_roll_of_the_template():
    gen = SyntheticGenerator(num_classes=2, image_size=8, shift=3, contrast=0.0, noise=0.0, main_fraction=1.0, seed=1)
    s = gen.sample(torch.tensor([0, 1, 1, 0, 1]), torch.Generator().manual_seed(2))
    for i in range(5):
        dy, dx = s.shift[i].tolist()
        assert abs(dy) <= 3 and abs(dx) <= 3
        rolled = torch.roll(gen.templates[s.y[i]], shifts=(dy, dx), dims=(1, 2))
        assert torch.equal(s.x[i], (rolled * 255).round().to(torch.uint8))


def test_within_class_spread_grows_with_the_nuisance_parameters():
    y = torch.zeros(400, dtype=torch.long)

    def spread(**kw):
        gen = SyntheticGenerator(num_classes=2, image_size=16, seed=0, **kw)
        x = gen.sample(y, torch.Generator().manual_seed(0)).x.float()
        return (x - x.mean(0)).pow(2).sum((1, 2, 3)).mean().item()

    assert spread(noise=0.0, contrast=0.1, shift=1) < spread(noise=0.2, contrast=0.1, shift=1)
    assert spread(noise=0.0, contrast=0.1, shift=1) < spread(noise=0.0, contrast=0.1, shift=5)


def test_main_part_fraction_and_ideal_pairs():
    gen = SyntheticGenerator(num_classes=4, image_size=8, main_fraction=0.7, seed=0)
    g = torch.Generator().manual_seed(0)
    s = gen.sample(gen.balanced_labels(4000, g), g)
    assert abs(s.main.float().mean().item() - 0.7) < 0.03  # 4000 Bernoulli(0.7): 4σ ≈ 0.03
    outside = s.shift[~s.main].abs().max()
    assert s.shift[s.main].abs().max() <= gen.shift < outside
    y = torch.tensor([0, 1, 2, 3, 0])
    x1, x2 = gen.ideal_pairs(y, g)
    assert x1.shape == x2.shape == (5, 3, 8, 8) and not torch.equal(x1, x2)


def test_digits_are_real_resizable_and_stratified():
    d = load_dataset("digits", image_size=12)
    assert d.x_train.shape[1:] == (3, 12, 12) and len(d.x_train) + len(d.x_test) == 1797
    assert torch.equal(d.x_train[:, 0], d.x_train[:, 2])
    frac = torch.bincount(d.y_test, minlength=10).float() / (torch.bincount(d.y_train, minlength=10) + torch.bincount(d.y_test, minlength=10))
    assert (frac - 0.25).abs().max() < 0.01


def test_unknown_dataset_and_bad_generator_arguments():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="main_fraction"):
        SyntheticGenerator(main_fraction=0.0)


def test_a_fixed_main_part_keeps_the_draws_and_checks_its_shape():
    """``main`` fixes membership without moving the random stream: with the drawn membership
    passed back, the images are identical; a wrong shape or dtype is refused."""
    gen = SyntheticGenerator(num_classes=4, image_size=8, main_fraction=0.6, seed=0)
    y = torch.arange(40) % 4
    drawn = gen.sample(y, torch.Generator().manual_seed(3))
    again = gen.sample(y, torch.Generator().manual_seed(3), main=drawn.main.clone())
    assert torch.equal(drawn.x, again.x) and torch.equal(drawn.main, again.main)
    forced = gen.sample(y, torch.Generator().manual_seed(3), main=torch.ones(40, dtype=torch.bool))
    assert forced.main.all() and (forced.contrast - 1).abs().max() <= gen.contrast + 1e-6
    with pytest.raises(ValueError, match="main must be a bool tensor"):
        gen.sample(y, torch.Generator().manual_seed(3), main=torch.ones(39, dtype=torch.bool))
