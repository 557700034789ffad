"""`clbounds certify RUN`: a PAC-Bayes certificate on the downstream error of encoder + probe.

The reference for how tight a bound on this encoder can be (bounds/certificates.py has the
arithmetic, the statements and the references). The recipe, after Dziugaite & Roy (2017)
and Pérez-Ortiz et al. (2021):

1. **Three independent samples.** The *prior* data is the run's training split: the encoder
   was trained on its images (without labels) and the linear probe is fitted on its
   features and labels. The *bound* sample S, of n examples, is drawn independently of it:
   for ``synthetic``, a fresh draw of n images from the run's generator (the same
   distribution, never seen in training); otherwise a random half of the test split. The
   *held-out* sample T is the test split (its second half otherwise): it measures the error
   that is bounded, and gives the test-set bound, the floor any certificate is compared with.
   The fresh draws are class-balanced (n/K of each class, as the generator draws its
   splits): independent, but not identically distributed. The bounds still hold, since a sum
   of independent non-identical [0, 1] variables is more concentrated than the i.i.d. sum
   with the same mean in the convex order (Hoeffding 1956, Theorem 3), and the kl bounds
   only use E exp(n kl(ê‖e)), a convex function of ê.
2. **Prior and posterior.** The encoder is fixed (a point mass in prior and posterior, so it
   adds nothing to the KL); the stochastic part is the probe's weights and biases, with
   prior N(μ₀, σ_p² I), μ₀ the probe fitted on the training split, and posterior
   N(μ, diag σ²). μ and σ are optimised on S by Adam on the McAllester-form surrogate
   ``bounded CE(Q) + sqrt((KL + ln(2√n/δ_p)) / (2n))``, the cross-entropy of each sampled
   probe clipped at p_min = 1e-4 and divided by ln(1/p_min) so that it lies in [0, 1]
   (Pérez-Ortiz et al.'s ``f_classic``). σ_p takes each value of a small grid; the best
   certificate is reported and the union bound pays for the choice.
3. **The certificate** (rigorous, 0-1 loss): ``draws`` probes sampled from the posterior, each
   scored on all of S; their mean error through the Monte-Carlo kl-inverse (δ' = 0.01),
   then the PAC-Bayes-kl inverse with the exact Gaussian KL (δ = 0.04 split over the grid).
   The best prior is chosen on one set of draws and certified on fresh ones, so δ' is spent
   once.

The quantity bounded is the error of the *Gibbs* classifier (a fresh probe drawn from the
posterior for each prediction), not that of the deterministic probe; both are measured on T.

**With the encoder in the posterior** (``certify(..., encoder=True)``, ``clbounds certify RUN
--encoder``): the stochastic part is every weight of the encoder's backbone *and* the probe.
Prior N(θ, σ_e² I) × N(μ₀, σ_p² I), θ the trained backbone (trained on the training split
only, so independent of S) and μ₀ as above; posterior N(θ, diag σ_enc²) × N(μ, diag σ²), the
encoder's mean kept at θ (moving 10⁴–10⁵ weights costs KL faster than it lowers the error),
every σ and μ optimised on minibatches of S by the same surrogate; (σ_e, σ_p) from a grid of
pairs, paid by the union bound. BatchNorm runs on its stored statistics, a fixed part of the
prior. The Monte-Carlo step draws **one classifier per example** of S (encoder and probe;
vmapped, so a pass costs about two deterministic forward passes): the n errors are
independent Bernoulli(p_i) given S with mean p̄ = ê_S(Q), and E exp(λ Σ Z_i) = Π(1 − p_i +
p_i e^λ) ≤ (1 − p̄ + p̄ e^λ)^n (AM–GM), so the binomial kl-Chernoff bound of
``mc_error_upper`` holds with m = n. Drawing whole classifiers instead, each scored on all of
S, would cost a full encoder pass per draw.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from itertools import product
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from clbounds.bounds import certificates as cert

from ..store.db import RunRecord, Store
from ..training.runs import open_run
from .probes import extract_features, fit_linear_probe

PRIOR_SIGMAS = (0.003, 0.01, 0.03, 0.1)  # σ_p of the probe's prior; each is one member of the union bound
P_MIN = 1e-4  # bounded cross-entropy: log-probabilities clipped at ln p_min, then divided by ln(1/p_min)
N_BOUND = 5000  # fresh examples in S for generated data
#: (σ_e of the backbone's prior, σ_p of the probe's prior) with the encoder in the posterior;
#: each pair is one member of the union bound.
ENCODER_PRIORS = tuple(product((0.001, 0.003, 0.01), (0.01, 0.03)))
ENCODER_BATCH = 256  # minibatch of S per surrogate step when the encoder is in the posterior
ENCODER_MEAN_LR = 1e-3  # Adam's step on the backbone's posterior mean where it moves: the prior σ_e is 1e-3 to 1e-2, so 0.01 a step would leave it at once


class FlatParams:
    """A module's parameters (those whose name does not start with ``exclude``) as one flat
    float64 vector θ on the CPU (where the seeded draws are made), and back: ``params(theta)``
    gives the float32 dict, on the module's device, that functional_call takes."""

    def __init__(self, model: nn.Module, exclude: str | None = None) -> None:
        named = [(n, p) for n, p in model.named_parameters() if exclude is None or not n.startswith(exclude)]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.theta = torch.cat([p.detach().flatten() for _, p in named]).double().cpu()
        self.device = named[0][1].device

    def params(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = theta.float().to(self.device).split([math.prod(s) for s in self.shapes], dim=-1)
        lead = theta.shape[:-1]  # a leading batch of parameter vectors, for vmap
        return {n: t.reshape(*lead, *s) for n, t, s in zip(self.names, parts, self.shapes)}


def _samples(cfg: Any, data: Any, n_bound: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """(x_S, y_S, x_T, y_T, how): the bound sample and the held-out sample, both independent of training."""
    if data.generator is not None:
        g = torch.Generator().manual_seed(cfg.seed * 7919 + 77_777)  # a stream no split of the run uses
        fresh = data.generator.sample(data.generator.balanced_labels(n_bound, g), g)
        how = f"S: {n_bound} fresh draws of the run's synthetic generator; T: the test split (n={data.x_test.shape[0]})"
        return fresh.x.to(data.x_test.device), fresh.y.to(data.x_test.device), data.x_test, data.y_test, how
    perm = torch.randperm(data.x_test.shape[0], generator=torch.Generator().manual_seed(cfg.seed)).to(data.x_test.device)
    half = data.x_test.shape[0] // 2
    s, t = perm[:half], perm[half:]
    how = f"S: a random half of the test split (n={half}); T: the other half (n={t.numel()})"
    return data.x_test[s], data.y_test[s], data.x_test[t], data.y_test[t], how


def with_bias(x: torch.Tensor) -> torch.Tensor:
    """[x | 1]: the probe's bias as the weight of a last input of 1."""
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)


def kl_to_prior(mu: torch.Tensor, rho: torch.Tensor, mu0: torch.Tensor, sigma_p: float) -> torch.Tensor:
    """KL(N(mu, diag e^{2 rho}) ‖ N(mu0, sigma_p² I)), differentiable (the surrogate's; the
    certificate uses bounds.certificates.gaussian_kl in float64)."""
    return 0.5 * ((rho.exp() / sigma_p) ** 2 + ((mu - mu0) / sigma_p) ** 2 - 1 - 2 * (rho - math.log(sigma_p))).sum()


def _sample_errors(x: torch.Tensor, y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, draws: int, g: torch.Generator, chunk: int = 64) -> np.ndarray:
    """The error on (x, y) of each of ``draws`` probes (flattened [W | b]) drawn from N(mu, diag sigma²)."""
    d = x.shape[1]
    classes = mu.numel() // (d + 1)
    errors = []
    x1 = with_bias(x)
    for start in range(0, draws, chunk):
        m = min(chunk, draws - start)
        w = mu + sigma * torch.randn(m, mu.numel(), generator=g, dtype=mu.dtype)
        logits = torch.einsum("nd,mkd->mnk", x1, w.view(m, classes, d + 1))
        errors.append((logits.argmax(2) != y).double().mean(1))
    return torch.cat(errors).numpy()


def _bounded_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -F.log_softmax(logits, 1).gather(1, y[:, None]).clamp_min(math.log(P_MIN)).mean() / math.log(1 / P_MIN)


def _optimise_posterior(x: torch.Tensor, y: torch.Tensor, mu0: torch.Tensor, sigma_p: float, delta_pb: float, steps: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """μ and σ of the posterior, by Adam on the McAllester surrogate (one sampled probe per step)."""
    n, d = x.shape
    classes = mu0.numel() // (d + 1)
    x1 = with_bias(x)
    mu = mu0.clone().requires_grad_(True)
    rho = torch.full_like(mu0, math.log(sigma_p)).requires_grad_(True)  # σ = e^ρ, started at the prior's σ
    opt = torch.optim.Adam([mu, rho], lr=0.01)
    constant = math.log(2 * math.sqrt(n) / delta_pb)
    for _ in range(steps):
        sigma = rho.exp()
        w = mu + sigma * torch.randn(mu.shape, generator=g, dtype=mu.dtype)
        kl = kl_to_prior(mu, rho, mu0, sigma_p)
        loss = _bounded_ce(x1 @ w.view(classes, d + 1).T, y) + torch.sqrt((kl + constant) / (2 * n))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return mu.detach(), rho.detach().exp()


def probe_mean(features: torch.Tensor, labels: torch.Tensor, k: int, cfg: Any) -> torch.Tensor:
    """The flattened [W | b] (float64) of the run's linear probe fitted on (features, labels),
    its standardisation folded into the weights: logits = [W/std | b − W·mean/std] · [h | 1]."""
    probe = fit_linear_probe(features, labels, k, cfg.eval.linear_steps, cfg.eval.linear_weight_decay)
    w0 = probe.head.weight / probe.std
    return torch.cat([w0, (probe.head.bias - w0 @ probe.mean)[:, None]], 1).flatten().double()


def probe_errors(features: torch.Tensor, labels: torch.Tensor, mu: torch.Tensor) -> int:
    """How many of (features, labels) the linear probe with flattened [W | b] ``mu`` gets wrong."""
    return int((with_bias(features) @ mu.view(-1, features.shape[1] + 1).T).argmax(1).ne(labels).sum())


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images to [0, 1] floats, as extract_features reads them."""
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()


class GibbsEncoderProbe:
    """The classifier x ↦ argmax [h_θ'(x) | 1]·W'ᵀ with θ' ~ N(θ, diag σ_enc²) over the
    backbone's weights and W' ~ N(μ, diag σ²) over the probe's (encoder=True)."""

    def __init__(self, model: nn.Module, classes: int) -> None:
        self.model = model
        self.flat = FlatParams(model, exclude="projector.")  # the backbone: what the probe reads
        self.buffers = dict(model.named_buffers())
        self.classes = classes

    def features(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """h_θ(x) for one θ (a minibatch) or one θ per example (θ of shape [n, P], vmapped)."""
        if theta.dim() == 1:
            return functional_call(self.model, (self.flat.params(theta), self.buffers), (_as_float(x),)).double().cpu()
        one = lambda p, xi: functional_call(self.model, (p, self.buffers), (xi[None],))[0]  # noqa: E731
        return vmap(one)(self.flat.params(theta), _as_float(x)).double().cpu()

    def per_example_errors(self, x: torch.Tensor, y: torch.Tensor, sigma_enc: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
                           g: torch.Generator, theta: torch.Tensor | None = None) -> np.ndarray:
        """0/1 error of a fresh classifier drawn from the posterior for each example of (x, y);
        ``theta`` is the backbone's posterior mean (default: the model's weights)."""
        theta = self.flat.theta if theta is None else theta
        chunk = max(1, min(100, 20_000_000 // theta.numel()))  # ≤ 2·10⁷ sampled weights (160 MB in float64) at a time
        errors = []
        with torch.no_grad():
            for start in range(0, x.shape[0], chunk):
                xb, yb = x[start : start + chunk], y[start : start + chunk]
                m = xb.shape[0]
                h = self.features(theta + sigma_enc * torch.randn(m, theta.numel(), generator=g, dtype=theta.dtype), xb)
                w = (mu + sigma * torch.randn(m, mu.numel(), generator=g, dtype=mu.dtype)).view(m, self.classes, -1)
                logits = torch.einsum("nd,nkd->nk", with_bias(h), w)
                errors.append((logits.argmax(1) != yb.cpu()).numpy())
        return np.concatenate(errors).astype(float)

    def gibbs_error(self, x: torch.Tensor, y: torch.Tensor, sigma_enc: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, g: torch.Generator,
                    theta: torch.Tensor | None = None, repeats: int = 1) -> float:
        """The mean 0/1 error on (x, y) of ``repeats`` fresh posterior classifiers per example."""
        return float(sum(self.per_example_errors(x, y, sigma_enc, mu, sigma, g, theta=theta).sum() for _ in range(repeats)) / (x.shape[0] * repeats))

    def optimise(self, x: torch.Tensor, y: torch.Tensor, mu0: torch.Tensor, sigma_e: float, sigma_p: float, delta_pb: float, steps: int,
                 g: torch.Generator, n_bound: int | None = None, move_encoder: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The backbone's mean and σ_enc, the probe's μ and σ, by Adam on the McAllester surrogate
        with one draw per minibatch of (x, y). The surrogate's n is ``n_bound``, the size of the
        sample the certificate is computed on (default: x's). Without ``move_encoder`` the
        backbone's mean stays at the model's weights (the prior's mean)."""
        n = x.shape[0]
        theta0 = self.flat.theta
        theta = theta0.clone().requires_grad_(move_encoder)
        rho_enc = torch.full_like(theta0, math.log(sigma_e)).requires_grad_(True)
        mu = mu0.clone().requires_grad_(True)
        rho = torch.full_like(mu0, math.log(sigma_p)).requires_grad_(True)
        groups = [{"params": [rho_enc, mu, rho], "lr": 0.01}] + ([{"params": [theta], "lr": ENCODER_MEAN_LR}] if move_encoder else [])
        opt = torch.optim.Adam(groups)
        constant = math.log(2 * math.sqrt(n_bound or n) / delta_pb)
        y_cpu = y.cpu()
        for _ in range(steps):
            idx = torch.randint(n, (min(ENCODER_BATCH, n),), generator=g)
            h = self.features(theta + rho_enc.exp() * torch.randn(theta.shape, generator=g, dtype=theta.dtype), x[idx.to(x.device)])
            w = mu + rho.exp() * torch.randn(mu.shape, generator=g, dtype=mu.dtype)
            kl = kl_to_prior(theta, rho_enc, theta0, sigma_e) + kl_to_prior(mu, rho, mu0, sigma_p)
            loss = _bounded_ce(with_bias(h) @ w.view(self.classes, -1).T, y_cpu[idx]) + torch.sqrt((kl + constant) / (2 * (n_bound or n)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return theta.detach(), rho_enc.detach().exp(), mu.detach(), rho.detach().exp()


class _Posterior(NamedTuple):
    """The chosen posterior of a downstream certificate and what its protocol says."""

    mu: torch.Tensor  # the probe's posterior mean (flattened [K, d + 1])
    kl: float
    mc_terms: int  # Monte-Carlo terms of the Gibbs error on S
    mean_error: float  # Gibbs error on S, fresh draws
    gibbs_t: float  # Gibbs error on T
    chosen: dict[str, Any]  # the prior (and posterior) constants, for the check's details
    theorem: str
    posterior: str  # the protocol's description of prior and posterior
    what: str  # the protocol of the Gibbs error on T


def _probe_posterior(f_s: torch.Tensor, y_s: torch.Tensor, f_t: torch.Tensor, y_t: torch.Tensor, mu0: torch.Tensor, prior_sigmas: Sequence[float],
                     draws: int, delta_pb: float, delta_mc: float, steps: int, g: torch.Generator, how: str,
                     log: Callable[[str], None] | None) -> _Posterior:
    """The probe-only certificate's posterior: the best prior of ``prior_sigmas`` (union bound)."""
    n = f_s.shape[0]
    candidates = []
    for sigma_p in prior_sigmas:
        mu, sigma = _optimise_posterior(f_s, y_s, mu0, sigma_p, delta_pb, steps, g)
        errors = _sample_errors(f_s, y_s, mu, sigma, draws, g)
        kl = cert.gaussian_kl(mu.numpy(), sigma.numpy(), mu0.numpy(), sigma_p)
        bound = cert.pac_bayes_kl_bound(cert.mc_error_upper(float(errors.mean()), draws, delta_mc), kl, n, delta_pb)
        candidates.append((bound, sigma_p, mu, sigma, float(errors.mean()), kl))
        if log:
            log(f"  prior sigma {sigma_p:g}: KL {kl:.1f}, Gibbs error on S {errors.mean():.4f}, bound {bound:.4f}")
    _, sigma_p, mu, sigma, _, kl = min(candidates, key=lambda c: c[0])
    # Fresh draws for the reported estimate: the choice above used its own, so the Monte-Carlo
    # bound is paid once (δ'), not once per candidate.
    mc_terms = draws
    mean_error = float(_sample_errors(f_s, y_s, mu, sigma, draws, g).mean())
    gibbs_t = float(_sample_errors(f_t, y_t, mu, sigma, draws, g).mean())  # the bounded quantity, estimated on T
    chosen = {"prior_sigma": sigma_p}
    theorem = "certificate.pac_bayes_downstream"
    posterior = (f"prior N(probe fitted on the train split, sigma_p^2 I) over the {mu.numel()} probe weights and biases, encoder fixed; "
                 f"sigma_p from {{{', '.join(f'{s:g}' for s in prior_sigmas)}}} (union bound); posterior N(mu, diag sigma^2) by Adam, {steps} steps, "
                 f"bounded CE p_min={P_MIN:g}; {draws} posterior draws")
    what = f"Gibbs classifier (probe ~ posterior per prediction), error on T, mean of {draws} draws; {how}"
    return _Posterior(mu, kl, mc_terms, mean_error, gibbs_t, chosen, theorem, posterior, what)


class EncoderProbePosterior(NamedTuple):
    """The chosen posterior over backbone and probe, and its Monte-Carlo estimate on S."""

    theta: torch.Tensor  # the backbone's posterior mean
    sigma_enc: torch.Tensor
    mu: torch.Tensor  # the probe's posterior mean, flattened [K, d + 1]
    sigma: torch.Tensor
    kl: float
    mean_error: float  # the mean of the mc_terms Monte-Carlo errors on S, fresh draws
    mc_terms: int
    sigma_e: float  # the chosen prior pair
    sigma_p: float
    delta_pb: float  # the PAC-Bayes δ of each prior: with the fields above, all the certificate needs


def choose_encoder_probe_posterior(gibbs: GibbsEncoderProbe, x_fit: torch.Tensor, y_fit: torch.Tensor, x_s: torch.Tensor, y_s: torch.Tensor,
                                   mu0: torch.Tensor, priors: Sequence[tuple[float, float]], steps: int, delta_pb: float, delta_mc: float,
                                   g: torch.Generator, log: Callable[[str], None] | None, move_encoder: bool = False,
                                   repeats: int = 1) -> EncoderProbePosterior:
    """For each (σ_e, σ_p) of ``priors`` (the union bound's members) the posterior fitted by the
    surrogate on (x_fit, y_fit) with n = |S| (the backbone's mean moving with ``move_encoder``),
    scored on S with one draw per example; the pair with the lowest certificate, then fresh
    draws for its reported estimate, ``repeats`` per example of S (δ' is paid once; m = n·r terms,
    see bounds/certificates.py). The certificate is
    ``pac_bayes_kl_bound(mc_error_upper(mean_error, mc_terms, delta_mc), kl, n, delta_pb)``."""
    n = x_s.shape[0]
    candidates = []
    for sigma_e, sigma_p in priors:
        theta, sigma_enc, mu, sigma = gibbs.optimise(x_fit, y_fit, mu0, sigma_e, sigma_p, delta_pb, steps, g, n_bound=n, move_encoder=move_encoder)
        error = gibbs.gibbs_error(x_s, y_s, sigma_enc, mu, sigma, g, theta=theta)
        kl = (cert.gaussian_kl(theta.numpy(), sigma_enc.numpy(), gibbs.flat.theta.numpy(), sigma_e)
              + cert.gaussian_kl(mu.numpy(), sigma.numpy(), mu0.numpy(), sigma_p))
        bound = cert.pac_bayes_kl_bound(cert.mc_error_upper(error, n, delta_mc), kl, n, delta_pb)
        candidates.append((bound, (sigma_e, sigma_p), (theta, sigma_enc, mu, sigma), kl))
        if log:
            log(f"  prior sigma encoder {sigma_e:g}, probe {sigma_p:g}: KL {kl:.1f}, Gibbs error on S {error:.4f}, bound {bound:.4f}")
    _, (sigma_e, sigma_p), (theta, sigma_enc, mu, sigma), kl = min(candidates, key=lambda c: c[0])
    mean_error = gibbs.gibbs_error(x_s, y_s, sigma_enc, mu, sigma, g, theta=theta, repeats=repeats)
    return EncoderProbePosterior(theta, sigma_enc, mu, sigma, kl, mean_error, n * repeats, sigma_e, sigma_p, delta_pb)


def _encoder_probe_posterior(model: nn.Module, k: int, x_s: torch.Tensor, y_s: torch.Tensor, x_t: torch.Tensor, y_t: torch.Tensor, mu0: torch.Tensor,
                             encoder_priors: Sequence[tuple[float, float]], delta_pb: float, delta_mc: float, steps: int, g: torch.Generator,
                             how: str, log: Callable[[str], None] | None) -> _Posterior:
    """The posterior over backbone and probe: the best (sigma_e, sigma_p) of ``encoder_priors``
    (union bound), fitted on S itself with the backbone's mean kept at the trained weights."""
    gibbs = GibbsEncoderProbe(model, k)
    post = choose_encoder_probe_posterior(gibbs, x_s, y_s, x_s, y_s, mu0, encoder_priors, steps, delta_pb, delta_mc, g, log)
    gibbs_t = gibbs.gibbs_error(x_t, y_t, post.sigma_enc, post.mu, post.sigma, g)
    chosen = {"prior_sigma": post.sigma_p, "prior_sigma_encoder": post.sigma_e,
              "posterior_sigma_encoder_median": float(post.sigma_enc.median()), "weights": gibbs.flat.theta.numel() + post.mu.numel()}
    theorem = "certificate.pac_bayes_encoder_probe"
    posterior = (f"prior N(trained backbone, sigma_e^2 I) x N(probe fitted on the train split, sigma_p^2 I) over the {gibbs.flat.theta.numel()} "
                 f"backbone and {post.mu.numel()} probe weights, BN statistics fixed; (sigma_e, sigma_p) from "
                 f"{{{', '.join(f'({a:g}, {b:g})' for a, b in encoder_priors)}}} (union bound); posterior N(trained backbone, diag sigma_enc^2) "
                 f"x N(mu, diag sigma^2) by Adam, {steps} steps on minibatches of {ENCODER_BATCH}, bounded CE p_min={P_MIN:g}; "
                 f"one posterior draw per example of S ({post.mc_terms} Monte-Carlo terms)")
    what = f"Gibbs classifier (backbone and probe ~ posterior per prediction), error on T, one draw per example; {how}"
    return _Posterior(post.mu, post.kl, post.mc_terms, post.mean_error, gibbs_t, chosen, theorem, posterior, what)


def certify(record: RunRecord, store: Store | None = None, n_bound: int = N_BOUND, draws: int = 1000, delta: float = cert.DELTA,
            delta_mc: float = cert.DELTA_MC, prior_sigmas: Sequence[float] = PRIOR_SIGMAS, steps: int = 500,
            log: Callable[[str], None] | None = None, encoder: bool = False,
            encoder_priors: Sequence[tuple[float, float]] = ENCODER_PRIORS) -> dict[str, Any]:
    """Certifies the run's encoder + linear probe; stores the rows and the two checks when
    ``store`` is given. Returns the certificate, the test-set bound, the measured errors,
    every constant and the wall time. With ``encoder`` the posterior also covers the
    backbone's weights (theorem ``certificate.pac_bayes_encoder_probe``; ``draws`` is then
    unused: the Monte-Carlo step draws one classifier per example of S)."""
    t0 = time.perf_counter()
    run = open_run(record)
    cfg, data, model = run.cfg, run.data, run.encoder
    k = data.num_classes
    x_s, y_s, x_t, y_t, how = _samples(cfg, data, n_bound)
    # Features once: the encoder is fixed, so every sampled probe reuses them (float64 on the CPU).
    f_train, f_s, f_t = (extract_features(model, x).double().cpu() for x in (data.x_train, x_s, x_t))
    y_train, y_s, y_t = data.y_train.cpu(), y_s.cpu(), y_t.cpu()
    mu0 = probe_mean(f_train, y_train, k, cfg)
    n = f_s.shape[0]
    priors = len(encoder_priors) if encoder else len(prior_sigmas)
    delta_pb = (delta - delta_mc) / priors
    g = torch.Generator().manual_seed(cfg.seed * 7919 + 31)
    if encoder:
        post = _encoder_probe_posterior(model, k, x_s, y_s, x_t, y_t, mu0, encoder_priors, delta_pb, delta_mc, steps, g, how, log)
    else:
        post = _probe_posterior(f_s, y_s, f_t, y_t, mu0, prior_sigmas, draws, delta_pb, delta_mc, steps, g, how, log)
    mu, kl, mc_terms, mean_error, gibbs_t, chosen, theorem, posterior, what = post
    bound = cert.pac_bayes_kl_bound(cert.mc_error_upper(mean_error, mc_terms, delta_mc), kl, n, delta_pb)
    mean_errors = probe_errors(f_t, y_t, mu)  # the posterior mean, a fixed classifier
    n_t = f_t.shape[0]
    # The references a reader needs beside the certificate (issue 28): the trivial predictor's
    # error, and a plain Clopper-Pearson bound of the prior-mean probe (fitted on the training
    # split only, so fixed before S and T) on all held-out data, S and T together: what the
    # PAC-Bayes step adds or costs over not using it.
    f_held, y_held = torch.cat([f_s, f_t]), torch.cat([y_s, y_t])
    majority = int(torch.bincount(y_train, minlength=k).argmax())
    trivial = float((y_held != majority).double().mean())
    prior_errors = probe_errors(f_held, y_held, mu0)
    seconds = time.perf_counter() - t0
    protocol = f"{how}; {posterior}; delta={delta:g} (Monte Carlo {delta_mc:g}, PAC-Bayes {delta_pb:.4g} per prior)"
    suffix = "_encoder_probe" if encoder else ""
    check = cert.certificate_check(mean_error, mc_terms, kl, n, k, gibbs_t, priors=priors, delta=delta, delta_mc=delta_mc,
                                   protocol=protocol, seconds=seconds, theorem=theorem, trivial_error=trivial, **chosen)
    floor = cert.holdout_check(mean_errors, n_t, k, mean_errors / n_t, delta, protocol=f"posterior-mean probe on the trained encoder, fixed before T; {how}",
                               theorem="certificate.test_set" + suffix, trivial_error=trivial)
    reference = cert.holdout_check(prior_errors, f_held.shape[0], k, prior_errors / f_held.shape[0], delta, trivial_error=trivial,
                                   theorem="certificate.heldout_prior_mean" + suffix,
                                   protocol=f"Clopper-Pearson on all held-out data (S and T, n={f_held.shape[0]}), the prior-mean probe (fitted on the training split only) on the trained encoder; {how}")
    result = {"bound": bound, "kl": kl, "n": n, "mc_terms": mc_terms, "gibbs_error_s": mean_error, "gibbs_error_t": gibbs_t,
              "mean_error_t": mean_errors / n_t, "test_set_bound": floor.bound, "chance": 1 - 1 / k, "trivial_error": trivial,
              "heldout_prior_mean_bound": reference.bound, "prior_mean_error": prior_errors / f_held.shape[0], "n_heldout": f_held.shape[0],
              "seconds": seconds, "protocol": protocol, "theorem": theorem, "checks": [check, floor, reference], **chosen}
    if store is not None:
        store.add_measurements(record.id, [
            (f"certificate{suffix}_downstream_error", bound, f"PAC-Bayes-kl certificate on the Gibbs error, {protocol}"),
            (f"certificate{suffix}_gibbs_error", gibbs_t, what),
            (f"certificate{suffix}_test_set_bound", floor.bound, f"Langford test-set bound (Clopper-Pearson), posterior-mean probe, delta={delta:g}; {how}"),
            (f"certificate{suffix}_heldout_prior_mean_bound", reference.bound, reference.details["protocol"]),
            (f"certificate{suffix}_trivial_error", trivial, f"error of always predicting the most frequent training class on S and T (n={f_held.shape[0]}); {how}"),
            (f"certificate{suffix}_seconds", seconds, f"wall time of `clbounds certify{' --encoder' if encoder else ''}`"),
        ])
        store.add_bound_checks(record.id, [c.to_row() for c in (check, floor, reference)])
    return result
