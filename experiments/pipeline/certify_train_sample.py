"""`clbounds certify RUN --train-sample`: certificates computed from the training sample.

A pipeline step, not a measurement: it trains the prior encoder with the run's own training
flow before it measures.

The certificates of certify.py and certify_contrastive.py are *held-out* statements: their
bound sample is data training never saw, and their prior is the trained encoder itself. The
papers' generalization bounds speak about the *training* sample; the certificates here are that
kind of statement, after Pérez-Ortiz et al. (2021, "Tighter risk certificates for neural
networks") and pacbb's protocol (prior on part of the training data, bound on the rest):

1. **Split.** A seeded permutation cuts the run's training split in two: the prior part
   (``prior_fraction`` of it, 50% by default) and the bound part S (the rest, n examples).
2. **Prior.** The run's own training flow (its config, seed, initial weights, augmentations
   and schedule, the epochs scaled so that it takes as many steps as the run did) on the
   images of the prior part only gives the prior encoder θ_P; a linear probe fitted on its
   features of the prior part and their labels gives μ_P. Prior N(θ_P, σ_e² I) × N(μ_P, σ_p² I)
   over the backbone's and the probe's weights; BatchNorm runs on θ_P's statistics, a fixed
   part of the prior. No weight, statistic or probe of the prior saw S
   (tests/test_certify_train_sample.py). The encoder's input normalisation is the dataset's
   fixed per-channel constants (data/, measured once on the dataset's whole training split),
   the same for every run: a negligible, data-independent-in-practice exception, named here.
3. **Posterior.** N(θ_Q, diag σ_enc²) × N(μ_Q, diag σ²), started at the prior and trained by
   Adam on the McAllester surrogate (bounded cross-entropy + sqrt((KL + ln(2√n/δ_P)) / 2n),
   n = |S|) on minibatches of the **whole** training split with its labels: a PAC-Bayes bound
   holds for every posterior at once, so the posterior may depend on S. (σ_e, σ_p) from
   ``TRAIN_SAMPLE_PRIORS``, paid by the union bound.
4. **Certificate.** ``MC_REPEATS`` classifiers drawn from the posterior per example of S, each
   scored on its example (the Monte-Carlo step with m = r·n independent terms whose
   probabilities average to the posterior's empirical error, see bounds/certificates.py), then the PAC-Bayes-kl inverse with the exact
   Gaussian KL; δ = 0.05 split as in certify.py.

**What is certified.** The Gibbs classifier of that posterior: a backbone drawn around θ_Q,
which started at the prior encoder (self-supervised on the prior part, same steps as the run)
and moved by supervised fine-tuning on the whole training split, with a probe drawn around
μ_Q. It is *not* the run's encoder, which saw every training image and so cannot be the
prior's mean. The result gives both errors on the test split T, the certified classifier's
(Gibbs, ``MC_REPEATS`` draws per image) and the run's (its encoder with a probe fitted on the whole
training split), so a reader sees how far the certified classifier is from the run.

**The NT-Xent risk in van Elst & Ghoshdastidar's setting** (arXiv 2412.03486, their i.i.d.
bound, ``iid_kl_bound`` in their code): the training images are the i.i.d. draws; the bound
part's images, cut into disjoint batches of ``batch`` with two views each, are the units; the
prior is θ_P with its projection head, which never saw them; the posterior N(θ_P, diag σ²).
The arithmetic is bounds.certificates.contrastive_certificate_check (reconstructed: their
code has no Monte-Carlo δ and no union bound over the prior grid). With n/B units it is
vacuous at the sizes of the quick configs (1,000 images give 15 units of 64), and it says so.
The downstream and the NT-Xent certificates share S and each holds with probability ≥ 1 − δ;
they are not one joint statement at 1 − δ (that would need δ/2 each).
Its transfer to the downstream cross-entropy (their Theorem 3, the smaller of Bao et al.'s form
and theirs; bounds.certificates.transfer_check) is reported at σ = 0, the lowest value it can
take: vacuous against log K whatever the feature spread σ is, wherever that limit reaches log K.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from clbounds.bounds import certificates as cert

from ..config import ConfigError, config_from_dict
from ..data import ImageDataset
from ..store.db import RunRecord, Store
from ..training.loop import train_in_memory
from ..training.resources import check_fits
from ..training.runs import batch_size_of, load_encoder, load_run_data, resolve_device
from ..measurement.certify import P_MIN, EncoderProbePosterior, GibbsEncoderProbe, choose_encoder_probe_posterior, probe_errors, probe_mean
from ..measurement.certify_contrastive import CONTRASTIVE_PRIOR_SIGMAS, contrastive_certificate, is_nt_xent, store_contrastive
from ..measurement.probes import extract_features

PRIOR_FRACTION = 0.5  # of the training split, for the prior (pacbb: 50-70%); the rest is the bound sample
#: (σ_e of the backbone's prior, σ_p of the probe's); each pair is one member of the union bound.
TRAIN_SAMPLE_PRIORS = ((0.001, 0.01), (0.003, 0.03), (0.01, 0.03))
MC_REPEATS = 10  # posterior draws per example of S in the certificate's Monte-Carlo step
MIN_BOUND = 100  # a bound part smaller than this certifies nothing useful: a usage error


def split_training(n: int, prior_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(prior indices, bound indices): a seeded permutation of the n training examples, cut at
    ``prior_fraction``. Disjoint, and together the whole split."""
    if not 0.0 < prior_fraction < 1.0:
        raise ConfigError(f"prior_fraction={prior_fraction} is out of range: must be > 0 and < 1")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + 99_991))
    cut = int(round(prior_fraction * n))
    return order[:cut], order[cut:]


def train_prior_encoder(cfg: Any, data: ImageDataset, prior_idx: torch.Tensor) -> tuple[torch.nn.Module, int]:
    """The run's training flow on the prior part only; its epochs (and warm-up epochs) scaled so
    that it takes as many optimizer steps as the run (at least as many epochs), uncompiled (the
    certificate runs it under vmap). Returns (encoder, epochs)."""
    part = dataclasses.replace(data, x_train=data.x_train[prior_idx.to(data.x_train.device)], y_train=data.y_train[prior_idx.to(data.y_train.device)],
                               train_main=None)
    o = cfg.optim
    n, n_part = data.x_train.shape[0], part.x_train.shape[0]
    steps_run = o.epochs * (n // batch_size_of(cfg, n))
    epochs = max(o.epochs, math.ceil(steps_run / (n_part // batch_size_of(cfg, n_part))))
    warmup = round(o.warmup_epochs * epochs / o.epochs)
    prior_cfg = dataclasses.replace(cfg, compile=False, optim=dataclasses.replace(o, epochs=epochs, warmup_epochs=warmup))
    return train_in_memory(prior_cfg, part), epochs


def _probe_mean(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, cfg: Any) -> torch.Tensor:
    """The flattened [W | b] of the run's linear probe fitted on the model's features of (x, y)."""
    return probe_mean(extract_features(model, x).double().cpu(), y.cpu(), k, cfg)


def _run_error(record: RunRecord, data: ImageDataset, cfg: Any) -> float:
    """The run's own test error: its encoder, a probe fitted on the whole training split."""
    model = load_encoder(record, data.image_shape).to(data.x_train.device).eval()
    k = data.num_classes
    mu = _probe_mean(model, data.x_train, data.y_train, k, cfg)
    return probe_errors(extract_features(model, data.x_test).double().cpu(), data.y_test.cpu(), mu) / data.x_test.shape[0]


def train_sample_posterior(gibbs: GibbsEncoderProbe, x_all: torch.Tensor, y_all: torch.Tensor, x_s: torch.Tensor, y_s: torch.Tensor,
                           mu0: torch.Tensor, priors: Sequence[tuple[float, float]], steps: int, delta: float, delta_mc: float,
                           g: torch.Generator, say: Callable[[str], None]) -> EncoderProbePosterior:
    """Steps 3 and 4 of the module's recipe: the posterior trained from the prior (``gibbs``'s
    model, and ``mu0``) on all of (x_all, y_all), its backbone's mean moving, the best pair of
    ``priors`` on S, then ``MC_REPEATS`` fresh draws per example of S
    (measurement/certify.choose_encoder_probe_posterior, which the held-out certificate uses too)."""
    return choose_encoder_probe_posterior(gibbs, x_all, y_all, x_s, y_s, mu0, priors, steps, (delta - delta_mc) / len(priors), delta_mc, g, say,
                                          move_encoder=True, repeats=MC_REPEATS)


def certify_train_sample(record: RunRecord, store: Store | None = None, prior_fraction: float = PRIOR_FRACTION, steps: int = 200,
                         delta: float = cert.DELTA, delta_mc: float = cert.DELTA_MC,
                         priors: Sequence[tuple[float, float]] = TRAIN_SAMPLE_PRIORS, contrastive: bool = True, batch: int = 64,
                         log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The training-sample certificate on the downstream error (and, for NT-Xent runs with
    ``contrastive``, on the NT-Xent risk); stores rows and checks when ``store`` is given.
    Returns the certificate, the certified classifier's and the run's test errors, the
    trivial predictor's error and every constant."""
    t0 = time.perf_counter()
    cfg = config_from_dict(record.config)
    if cfg.encoder.arch == "external":
        raise ConfigError(f"run {record.id} is an imported encoder: the training-sample certificate retrains the run's own training on part of "
                          "its training split, and an import has none to repeat (use the held-out certificates: certify, --encoder)")
    device = resolve_device(cfg.device)
    check_fits(cfg, device)  # the prior's training: a usage error now, not after the first progress line
    data = load_run_data(cfg).to(device)
    k, n_train = data.num_classes, data.x_train.shape[0]
    prior_idx, bound_idx = split_training(n_train, prior_fraction, cfg.seed)
    if bound_idx.numel() < MIN_BOUND:
        raise ConfigError(f"the bound part has {bound_idx.numel()} examples (training split {n_train}, prior fraction {prior_fraction:g}); "
                          f"a training-sample certificate needs at least {MIN_BOUND}")
    say = log or (lambda line: None)
    say(f"  prior encoder: the run's training on {prior_idx.numel()} of {n_train} training images ...")
    prior_model, prior_epochs = train_prior_encoder(cfg, data, prior_idx)
    dev = data.x_train.device
    x_p, y_p = data.x_train[prior_idx.to(dev)], data.y_train[prior_idx.to(dev)]
    x_s, y_s = data.x_train[bound_idx.to(dev)], data.y_train[bound_idx.to(dev)]
    mu0 = _probe_mean(prior_model, x_p, y_p, k, cfg)

    gibbs = GibbsEncoderProbe(prior_model, k)
    n = x_s.shape[0]
    g = torch.Generator().manual_seed(cfg.seed * 7919 + 4_242)
    post = train_sample_posterior(gibbs, data.x_train, data.y_train, x_s, y_s, mu0, priors, steps, delta, delta_mc, g, say)
    gibbs_t = gibbs.gibbs_error(data.x_test, data.y_test, post.sigma_enc, post.mu, post.sigma, g, theta=post.theta, repeats=MC_REPEATS)
    run_error = _run_error(record, data, cfg)
    majority = int(torch.bincount(data.y_train.cpu(), minlength=k).argmax())
    trivial = float((data.y_test.cpu() != majority).double().mean())
    movement = float((post.theta - gibbs.flat.theta).norm() / gibbs.flat.theta.norm())
    how = (f"prior part: {prior_idx.numel()} of the {n_train} training images (seeded permutation, fraction {prior_fraction:g}); "
           f"S: the other {n} training images; T: the test split (n={data.x_test.shape[0]})")
    protocol = (f"{how}; prior N(theta_P, sigma_e^2 I) x N(mu_P, sigma_p^2 I): theta_P the run's training flow on the prior part "
                f"({prior_epochs} epochs, as many steps as the run), mu_P a linear probe fitted on its prior-part features, BN statistics theta_P's; "
                f"{gibbs.flat.theta.numel()} backbone and {post.mu.numel()} probe weights; (sigma_e, sigma_p) from "
                f"{{{', '.join(f'({a:g}, {b:g})' for a, b in priors)}}} (union bound); posterior N(theta_Q, diag sigma_enc^2) x N(mu_Q, diag sigma^2) "
                f"from the prior by Adam, {steps} steps on minibatches of the whole training split with labels, bounded CE p_min={P_MIN:g}; "
                f"{MC_REPEATS} posterior draws per example of S ({post.mc_terms} Monte-Carlo terms); delta={delta:g} (Monte Carlo {delta_mc:g}, PAC-Bayes {post.delta_pb:.4g} per prior)")
    seconds = time.perf_counter() - t0
    check = cert.certificate_check(post.mean_error, post.mc_terms, post.kl, n, k, gibbs_t, priors=len(priors), delta=delta, delta_mc=delta_mc, protocol=protocol,
                                   seconds=seconds, theorem="certificate.pac_bayes_train_sample", trivial_error=trivial, prior_sigma=post.sigma_p,
                                   prior_sigma_encoder=post.sigma_e, run_error=run_error, encoder_mean_movement=movement)
    result = {"bound": check.bound, "kl": post.kl, "n": n, "mc_terms": post.mc_terms, "n_prior": prior_idx.numel(), "gibbs_error_s": post.mean_error, "gibbs_error_t": gibbs_t,
              "run_error": run_error, "trivial_error": trivial, "prior_sigma": post.sigma_p, "prior_sigma_encoder": post.sigma_e, "prior_epochs": prior_epochs,
              "encoder_mean_movement": movement, "protocol": protocol, "checks": [check], "seconds": seconds,
              "split": (prior_idx, bound_idx)}
    if store is not None:
        store.add_measurements(record.id, [
            ("certificate_train_sample_downstream_error", check.bound, f"PAC-Bayes-kl certificate from the training sample on the Gibbs error, {protocol}"),
            ("certificate_train_sample_gibbs_error", gibbs_t, f"the certified Gibbs classifier (backbone and probe ~ posterior per image), error on T, {MC_REPEATS} draws per image; {how}"),
            ("certificate_train_sample_run_error", run_error, f"the run's encoder with a linear probe fitted on the whole training split, error on T; {how}"),
        ])
        store.add_bound_checks(record.id, [check.to_row()])
    if contrastive and is_nt_xent(cfg) and n // batch >= 2:  # fewer than two units: no certificate to speak of
        say(f"  NT-Xent on the bound part, units of {batch} images ...")
        how_c = f"S: the bound part's {n} training images in batches of {batch}, two views each ({cfg.augment}); T: the test split's batches"
        result["contrastive"] = contrastive_certificate(prior_model, cfg, x_s, data.x_test, batch, delta, delta_mc, CONTRASTIVE_PRIOR_SIGMAS,
                                                        steps, g, how_c, time.perf_counter(), k, log, theorem="certificate.pac_bayes_contrastive_train_sample")
        if store is not None:
            store_contrastive(store, record.id, result["contrastive"], "certificate_train_sample_contrastive")
    return result
