"""The pieces of the methods of PAPERS.md §1–§4: SAM/ASAM, Fourier mixing, CACR weights,
PGD views, dual BatchNorm, the discriminator, the imbalanced split, Wen's two-network loss,
the adversarially trained probe."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from clbounds.experiments.measurement.adversarial_probe import fit_adversarial_linear_probe
from clbounds.experiments.training.augment import fourier_amplitude_mix
from clbounds.experiments.config import ConfigError, config_from_dict
from clbounds.experiments.models.encoders import DualBatchNorm, Encoder, bn_branch
from clbounds.experiments.data.subsets import imbalanced_indices
from clbounds.experiments.training.methods import adversarial_view, method_losses, ssl_loss
from clbounds.experiments.training.methods.common import discriminator_term
from clbounds.experiments.training.methods.two_network import gaussian_init_
from clbounds.experiments.measurement.probes import fit_linear_probe
from clbounds.experiments.training.sam import SAM, frozen_batchnorm_stats, sam_update
from clbounds.theory.adversarial import robust_accuracy
from clbounds.theory.losses import cacr, query_key_info_nce

from conftest import tiny_raw


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1)).double()


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ---- SAM / ASAM ---------------------------------------------------------------------------


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("rho", [0.05, 0.7])
def test_sam_first_step_moves_by_rho_and_second_step_restores_before_the_update(adaptive, rho):
    model = _net()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    sam = SAM(model.parameters(), base, rho=rho, adaptive=adaptive)
    theta = _params(model)
    F.mse_loss(model(x), y).backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters()])
    sam.first_step()
    e = _params(model) - theta
    if adaptive:  # ASAM: ‖e / |θ|‖ = ρ over the coordinates it moves, e = ρ·|θ|²g / ‖|θ|g‖
        moved = theta != 0
        assert torch.allclose(torch.linalg.vector_norm(e[moved] / theta[moved].abs()), torch.tensor(rho, dtype=torch.float64))
        expected = rho * theta.pow(2) * grad / torch.linalg.vector_norm(theta.abs() * grad)
    else:
        assert torch.allclose(torch.linalg.vector_norm(e), torch.tensor(rho, dtype=torch.float64))
        expected = rho * grad / torch.linalg.vector_norm(grad)
    assert torch.allclose(e, expected, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())

    # The second pass's gradient (at θ + e) drives a step taken *from θ*: with a zero learning
    # rate the weights come back bitwise; with lr the step is θ − lr·g(θ + e).
    F.mse_loss(model(x), y).backward()
    g_perturbed = torch.cat([p.grad.flatten() for p in model.parameters()])
    for group in base.param_groups:
        group["lr"] = 0.0
    sam_zero = SAM(model.parameters(), base, rho=rho, adaptive=adaptive)
    sam_zero._saved, sam._saved = sam._saved, []
    sam_zero.second_step()
    assert torch.equal(_params(model), theta)

    model2 = _net()
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    sam2 = SAM(model2.parameters(), opt2, rho=rho, adaptive=adaptive)
    F.mse_loss(model2(x), y).backward()
    sam2.first_step()
    F.mse_loss(model2(x), y).backward()
    sam2.second_step()
    assert torch.allclose(_params(model2), theta - 0.1 * g_perturbed, atol=1e-12)


def test_sam_zero_gradient_gives_no_perturbation_and_validates_rho():
    w = nn.Parameter(torch.ones(3, dtype=torch.float64))
    sam = SAM([w], torch.optim.SGD([w], lr=0.1), rho=0.1)
    w.grad = torch.zeros(3, dtype=torch.float64)
    sam.first_step()
    assert torch.equal(w.detach(), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="rho > 0"):
        SAM([w], torch.optim.SGD([w], lr=0.1), rho=0.0)


def test_batchnorm_statistics_are_frozen_on_the_second_pass_only():
    model = _net()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    bn = model[1]
    sam = SAM(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1), rho=0.1)
    loss = F.mse_loss(model(x), y)  # the first pass updates the running statistics once
    after_first = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    sam_update(sam, model, loss, None, lambda: F.mse_loss(model(x), y))
    assert torch.equal(bn.running_mean, after_first[0]) and torch.equal(bn.running_var, after_first[1])
    assert int(bn.num_batches_tracked) == after_first[2] == 1 and bn.track_running_stats
    # frozen statistics still normalise with the batch statistics (train mode)
    with frozen_batchnorm_stats(model):
        out = bn(torch.randn(32, 8, dtype=torch.float64) * 5 + 3).detach()
    assert torch.allclose(out.mean(0), bn.bias.detach(), atol=1e-9)


def test_sam_update_adds_the_rest_gradient_taken_at_theta():
    w = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=1.0)
    sam = SAM([w], opt, rho=0.5)
    sharp = lambda: 0.5 * w.pow(2).sum()  # gradient w           # noqa: E731
    rest = (w * torch.tensor([3.0, -1.0], dtype=torch.float64)).sum()  # gradient (3, −1)
    theta = w.detach().clone()
    sam_update(sam, nn.Module(), sharp(), rest, sharp)
    e = 0.5 * theta / theta.norm()
    assert torch.allclose(w.detach(), theta - ((theta + e) + torch.tensor([3.0, -1.0], dtype=torch.float64)))


# ---- Fourier amplitude mixing -------------------------------------------------------------


def test_fourier_with_eta_zero_returns_the_input():
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = fourier_amplitude_mix(x, 0.0, torch.Generator().manual_seed(1))
    assert (y - x).abs().max() < 1e-5


def test_fourier_keeps_the_phase_and_mixes_the_amplitude_with_another_image():
    g = torch.Generator().manual_seed(0)
    x = 0.5 + 0.1 * torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)  # far from the clamp
    y = fourier_amplitude_mix(x, 1.0, torch.Generator().manual_seed(2))
    assert y.dtype == torch.float64 and 0 < y.min() and y.max() < 1  # the clamp did not bind
    fx, fy = torch.fft.fft2(x), torch.fft.fft2(y)
    significant = fx.abs() > 1e-6
    phase_gap = torch.angle(fy / fx)[significant]
    assert phase_gap.abs().max() < 1e-6
    # |F(y)| = (1−λ)|F(x_i)| + λ|F(x_j)| for one λ ∈ [0, 1] and one j ≠ i per image
    ax = fx.abs()
    for i in range(4):
        fits = []
        for j in range(4):
            if j == i:
                continue
            d = (ax[j] - ax[i]).flatten()
            lam = float(((fy[i].abs() - ax[i]).flatten() @ d) / (d @ d))
            fits.append((float(((1 - lam) * ax[i] + lam * ax[j] - fy[i].abs()).abs().max()), lam))
        err, lam = min(fits)
        assert err < 1e-8 and 0 <= lam <= 1


def test_fourier_is_reproducible_and_validates_eta():
    x = torch.rand(4, 3, 8, 8)
    a = fourier_amplitude_mix(x, 0.5, torch.Generator().manual_seed(3))
    b = fourier_amplitude_mix(x, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        fourier_amplitude_mix(x, 1.5, torch.Generator())


# ---- CACR weights -------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 5), st.integers(3, 9))
def test_cacr_weights_sum_to_one_and_favour_far_positives_and_close_negatives(seed, v, b):
    views = torch.randn(v, b, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    _, w = cacr(views, tau_pos=1.0, tau_neg=0.9, return_weights=True)
    assert torch.allclose(w["w_pos"].sum(-1), torch.ones(v, b, dtype=torch.float64))
    assert torch.allclose(w["w_neg"].sum(-1), torch.ones(len(w["pairs"]), b, dtype=torch.float64))
    z = F.normalize(views, dim=-1)
    # farther positive ⇒ larger weight (query view 0: its positives are views 1..V−1)
    d_pos = (z[0][:, None] - z[1:].transpose(0, 1)).pow(2).sum(-1)  # [B, K]
    order = d_pos.argsort(dim=1)
    assert (w["w_pos"][0].gather(1, order).diff(dim=1) >= -1e-12).all()
    # closer negative ⇒ larger weight (pair (0, 1)), the positive itself gets 0
    x_, y_ = w["pairs"][0].tolist()
    d_neg = torch.cdist(z[x_], z[y_]).pow(2)
    w01 = w["w_neg"][0]
    assert torch.equal(w01.diagonal(), torch.zeros(b, dtype=torch.float64))
    for i in range(b):
        js = [j for j in range(b) if j != i]
        ranked = sorted(js, key=lambda j: float(d_neg[i, j]))
        assert all(float(w01[i, a]) >= float(w01[i, c]) - 1e-12 for a, c in zip(ranked, ranked[1:]))


def test_cacr_uniform_ablations_through_the_method_config():
    cfg = config_from_dict(tiny_raw(method__name="cacr", method__positives=2, method__uniform_pos=True, method__uniform_neg=True))
    views = torch.randn(3, 6, 4, dtype=torch.float64)
    loss = ssl_loss(cfg)(views)
    z = F.normalize(views, dim=-1)
    attraction = sum((z[q] - z[k]).pow(2).sum(-1).mean() for q in range(3) for k in range(3) if k != q) / 6
    pairs = [(0, 1), (0, 2), (1, 2)]
    off = ~torch.eye(6, dtype=torch.bool)
    repulsion = sum(-(torch.cdist(z[a], z[c]).pow(2)[off].view(6, 5).mean(1)).mean() for a, c in pairs) / 3
    assert torch.allclose(loss, attraction + repulsion)


# ---- robust contrastive learning ------------------------------------------------------------


def _robust_cfg(**kw):
    return config_from_dict(tiny_raw(method__name="robust_cl", encoder__dual_bn=True, **kw))


def test_pgd_views_stay_in_the_eps_ball_and_the_unit_box_and_raise_the_loss():
    cfg = _robust_cfg(method__eps=0.05, method__alpha=0.02, method__steps=5)
    torch.manual_seed(0)
    enc = Encoder("mlp", (3, 8, 8), width=0.05, proj_hidden=16, proj_dim=8, dual_bn=True)
    disc = nn.Linear(8, 1)
    g = torch.Generator().manual_seed(0)
    v1 = torch.rand(16, 3, 8, 8, generator=g)
    v2 = torch.rand(16, 3, 8, 8, generator=g)
    v2[0] = 0.0  # on the box's faces: the clamp must hold
    v2[1] = 1.0
    x_adv = adversarial_view(cfg, enc, disc, v1, v2, torch.Generator().manual_seed(1))
    assert (x_adv - v2).abs().max() <= 0.05 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    enc.eval()
    with torch.no_grad():
        z1 = enc.projector(enc(v1))
        with bn_branch(enc, adversarial=True):
            z_adv = enc.projector(enc(x_adv))
            z_ben = enc.projector(enc(v2))
    nce = lambda a, b: ssl_loss(cfg)(a, b)  # noqa: E731
    assert float(nce(z1, z_adv)) > float(nce(z1, z_ben))


def test_dual_batchnorm_branches_are_independent_and_benign_is_the_default():
    enc = Encoder("convnet", (3, 8, 8), width=0.125, proj_hidden=8, proj_dim=4, dual_bn=True)
    duals = [m for m in enc.modules() if isinstance(m, DualBatchNorm)]
    assert len(duals) == 5 and not any(isinstance(m, nn.BatchNorm2d) and not isinstance(p, DualBatchNorm) for p in enc.modules() for m in p.children())
    x = torch.rand(8, 3, 8, 8)
    enc.train()
    with bn_branch(enc, adversarial=True):
        enc.projector(enc(x))
    assert all(int(d.adversarial.num_batches_tracked) == 1 and int(d.benign.num_batches_tracked) == 0 for d in duals)
    assert not any(d.use_adversarial for d in duals)
    # a state dict round-trips into a fresh dual-BN encoder, and the benign branch is what forward uses
    fresh = Encoder("convnet", (3, 8, 8), width=0.125, proj_hidden=8, proj_dim=4, dual_bn=True)
    fresh.load_state_dict(enc.state_dict())
    enc.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(enc(x), fresh(x))
        with bn_branch(enc, adversarial=True):
            adv = enc(x)
        assert not torch.equal(adv, fresh(x))


def test_discriminator_loss_closed_form_and_frozen_weights_get_no_gradient():
    d = nn.Linear(2, 1).double()
    with torch.no_grad():
        d.weight.copy_(torch.tensor([[2.0, 0.0]])), d.bias.zero_()
    zb = torch.tensor([[3.0, 4.0]], dtype=torch.float64, requires_grad=True)  # ẑ = (0.6, 0.8): logit 1.2
    za = torch.tensor([[0.0, -1.0]], dtype=torch.float64)  # ẑ = (0, −1): logit 0
    loss = discriminator_term(d, zb, za, frozen=True)
    expected = 0.5 * (math.log1p(math.exp(-1.2)) + math.log(2))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert d.weight.grad is None and zb.grad is not None


def test_robust_losses_split_benign_and_rest_with_the_configured_weights():
    cfg = _robust_cfg(method__benign_w=2.0, method__d_w=0.5)
    torch.manual_seed(0)
    nets = nn.ModuleDict({"encoder": Encoder("mlp", (3, 4, 4), width=0.05, proj_hidden=8, proj_dim=4, dual_bn=True), "discriminator": nn.Linear(4, 1)}).eval()
    views = [torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    nce = ssl_loss(cfg)
    sharp, rest = method_losses(cfg, nets, views, nce)
    enc = nets["encoder"]
    z1, z2 = enc.projector(enc(views[0])), enc.projector(enc(views[1]))
    with bn_branch(enc, adversarial=True):
        za = enc.projector(enc(views[2]))
    assert torch.allclose(sharp, 2.0 * nce(z1, z2))
    assert torch.allclose(rest, nce(z1, za) - 0.5 * discriminator_term(nets["discriminator"], z2, za))
    rocl = config_from_dict(tiny_raw(method__name="rocl"))
    sharp_r, rest_r = method_losses(rocl, nets, views, nce)
    assert rest_r is None and torch.allclose(sharp_r, nce(z1, za))


# ---- data, initialisation, two networks, config -------------------------------------------


def test_imbalanced_split_keeps_i_plus_one_over_k_of_each_class():
    y = torch.arange(5).repeat(20)  # 20 per class
    idx = imbalanced_indices(y, 5, torch.Generator().manual_seed(0))
    assert torch.bincount(y[idx], minlength=5).tolist() == [4, 8, 12, 16, 20]
    assert torch.equal(idx, idx.sort().values) and idx.unique().numel() == idx.numel()


def test_query_key_loss_matches_a_plain_loop():
    q = torch.randn(4, 3, dtype=torch.float64)
    k = torch.randn(4, 3, dtype=torch.float64)
    expected = 0.0
    for i in range(4):
        qi = q[i] / q[i].norm()
        sims = [float(qi @ (k[j] / k[j].norm())) / 0.5 for j in range(4)]
        expected += -sims[i] + math.log(sum(math.exp(s) for s in sims))
    assert query_key_info_nce(q, k, 0.5).item() == pytest.approx(expected / 4, rel=1e-12)


def test_gaussian_init_is_he_normal_with_zero_bias():
    torch.manual_seed(0)
    m = gaussian_init_(nn.Sequential(nn.Linear(1000, 500), nn.Conv2d(10, 300, 3)))
    assert float(m[0].weight.detach().std()) == pytest.approx(math.sqrt(2 / 1000), rel=0.02)
    assert float(m[1].weight.detach().std()) == pytest.approx(math.sqrt(2 / 90), rel=0.02)
    assert float(m[0].bias.detach().abs().max()) == 0.0 and float(m[1].bias.detach().abs().max()) == 0.0


@pytest.mark.parametrize("key,value,pattern", [
    ("rho", 0.0, r"method.rho=0.0 is out of range: must be > 0"),
    ("fourier_eta", 1.5, r"method.fourier_eta=1.5 is out of range: must be >= 0 and <= 1"),
    ("positives", 0, r"method.positives=0 is out of range"),
    ("eps", 0.0, r"method.eps=0.0 is out of range"),
    ("use_sam", "yes", r"method.use_sam='yes' has the wrong type: expected bool"),
    ("tau_neg", -1.0, r"method.tau_neg=-1.0 is out of range"),
    ("name", "ssaclr", r"did you mean 'ssa_clr'"),
    ("full_batchh", True, r"unknown key 'method.full_batchh'.*did you mean 'full_batch'"),
])
def test_method_config_is_validated(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(tiny_raw(**{f"method__{key}": value}))


def test_data_imbalanced_and_encoder_dual_bn_are_config_keys():
    cfg = config_from_dict(tiny_raw(data__imbalanced=True, encoder__dual_bn=True))
    assert cfg.data.imbalanced and cfg.encoder.dual_bn
    with pytest.raises(ConfigError, match="data.imbalanced"):
        config_from_dict(tiny_raw(data__imbalanced=1))


# ---- adversarially trained probe ------------------------------------------------------------


def test_adversarially_trained_probe_beats_the_standard_probe_under_attack():
    # A robust feature (0.5 ± 0.3, right 90% of the time) and 40 non-robust ones (0.5 ± 0.02 +
    # noise): the standard probe leans on the many small ones, which ε = 0.05 flips.
    g = torch.Generator().manual_seed(0)
    n, d = 600, 40
    y = torch.randint(0, 2, (n,), generator=g)
    s = 2.0 * y - 1
    robust = 0.5 + 0.3 * s * torch.where(torch.rand(n, generator=g) < 0.9, 1.0, -1.0)
    weak = 0.5 + 0.02 * s[:, None] + 0.05 * torch.randn(n, d, generator=g)
    x = torch.cat([robust[:, None], weak], 1).clamp(0, 1).view(n, 1, 1, d + 1)
    enc = nn.Flatten()
    tr, te = slice(0, 400), slice(400, n)
    standard = fit_linear_probe(enc(x[tr]), y[tr], 2, steps=100)
    adversarial = fit_adversarial_linear_probe(enc, x[tr], y[tr], 2, eps=0.05, alpha=0.0125, steps=10, epochs=15, batch_size=100, generator=torch.Generator().manual_seed(1))
    attack = dict(eps=0.05, alpha=0.005, steps=20, generator=torch.Generator().manual_seed(2))
    std_r = robust_accuracy(nn.Sequential(enc, standard), x[te], y[te], **attack)
    adv_r = robust_accuracy(nn.Sequential(enc, adversarial), x[te], y[te], **attack)
    assert std_r["clean_accuracy"] > 0.95
    assert adv_r["robust_accuracy"] > 0.8 > 0.4 > std_r["robust_accuracy"]


def test_methods_table_renders_mean_and_sample_std_with_protocols():
    from benchmarks.studies.methods_table import ROWS, render

    results = {ROWS[0].label: [{"knn_accuracy": 0.90, "train_wall_s": 10.0}, {"knn_accuracy": 0.94, "train_wall_s": 12.0}]}
    text = render(results, {"knn_accuracy": "knn k=200 t=0.1"}, [0, 1], 0, "python -m benchmarks.studies.methods_table")
    row = next(line for line in text.splitlines() if line.startswith(f"| {ROWS[0].label} |"))
    assert "92.0 ± 2.8" in row and "11.0 ± 1.4" in row and "–" in row  # missing columns are dashes
    assert "knn k=200 t=0.1" in text and "nproc=" in text
