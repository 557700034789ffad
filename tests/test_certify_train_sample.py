"""`clbounds certify RUN --train-sample`: certificates computed from the training sample
(experiments/pipeline/certify_train_sample.py): the split, the prior's independence of the
bound part, the end-to-end command, and the coverage of the procedure on a known risk."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clbounds.bounds import certificates as cert
from clbounds.experiments.cli import main
from clbounds.experiments.pipeline import certify_train_sample as ts
from clbounds.experiments.store.db import Store

from conftest import TINY_ARGS

TINY = [*TINY_ARGS, "data.n_train=512", "data.n_test=128", "optim.epochs=2", "optim.batch_size=64", "eval.linear_steps=20"]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("certify_train_sample") / "s"
    assert main(["--store", str(store), "train", "quick-simclr-synthetic", *TINY, "--quiet"]) == 0
    return store


def _bytes(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def test_the_split_is_disjoint_covers_the_training_split_and_differs_between_seeds():
    splits = [ts.split_training(1000, 0.5, seed) for seed in (0, 1)]
    for prior, bound in splits:
        assert prior.numel() == 500 and bound.numel() == 500
        assert not set(prior.tolist()) & set(bound.tolist()) and set(prior.tolist()) | set(bound.tolist()) == set(range(1000))
    assert set(splits[0][1].tolist()) != set(splits[1][1].tolist())
    assert torch.equal(ts.split_training(1000, 0.5, 0)[1], splits[0][1])  # seeded: the same split every time
    with pytest.raises(ValueError, match="prior_fraction"):
        ts.split_training(1000, 1.0, 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_nothing_the_prior_saw_overlaps_the_bound_sample(tiny_store, monkeypatch, seed):
    """Independence by construction: the prior encoder is trained on, and the prior probe fitted
    on, images of the prior part only; the bound sample S is the rest (two seeds)."""
    (run,) = Store(tiny_store).runs()
    seen: dict[str, list[torch.Tensor]] = {"train": [], "probe": [], "bound": []}
    real_train, real_probe, real_post = ts.train_in_memory, ts._probe_mean, ts.train_sample_posterior

    def spy_train(cfg, data):
        seen["train"].append(data.x_train.cpu())
        return real_train(cfg, data)

    def spy_probe(model, x, y, k, cfg):
        seen["probe"].append(x.cpu())
        return real_probe(model, x, y, k, cfg)

    def spy_post(gibbs, x_all, y_all, x_s, *args):
        seen["bound"].append(x_s.cpu())
        return real_post(gibbs, x_all, y_all, x_s, *args)

    monkeypatch.setattr(ts, "train_in_memory", spy_train)
    monkeypatch.setattr(ts, "_probe_mean", spy_probe)
    monkeypatch.setattr(ts, "train_sample_posterior", spy_post)
    record = run if seed == 0 else _reseeded(run, tiny_store, seed)
    result = ts.certify_train_sample(record, None, steps=2, contrastive=False)
    (trained,), (bound,) = seen["train"], seen["bound"]
    prior_probe = seen["probe"][0]  # the first probe is the prior's; the second is the run's own, on the whole split
    assert trained.shape[0] == result["n_prior"] and bound.shape[0] == result["n"]
    assert not _bytes(trained) & _bytes(bound) and not _bytes(prior_probe) & _bytes(bound)
    prior_idx, bound_idx = result["split"]
    assert not set(prior_idx.tolist()) & set(bound_idx.tolist())


def _reseeded(run, store_path, seed):
    """The same tiny run trained with another seed (another split of the training set)."""
    assert main(["--store", str(store_path), "train", "quick-simclr-synthetic", *TINY, f"seed={seed}", "--quiet"]) == 0
    return next(r for r in Store(store_path).runs() if r.config["seed"] == seed)


def test_certify_from_the_training_sample_end_to_end(tiny_store, capsys):
    (run, *_) = [r for r in Store(tiny_store).runs() if r.config["seed"] == 0]
    assert main(["--store", str(tiny_store), "certify", run.id, "--train-sample", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "certified downstream error from the training sample (Gibbs classifier: backbone and probe ~ posterior) <=" in out
    assert "the run's encoder + probe" in out and "prior: the run's training on 256 training images" in out
    checks = {c["theorem"]: c for c in Store(tiny_store).bound_checks(run.id)}
    pac = checks["certificate.pac_bayes_train_sample"]
    inputs = pac["details"]["inputs"]
    assert inputs["n"] == 256 and inputs["mc_draws"] == 256 * ts.MC_REPEATS and inputs["priors"] == len(ts.TRAIN_SAMPLE_PRIORS)
    assert pac["details"]["label"] == "reconstructed" and "trivial predictor" in pac["details"]["ceiling"]["note"]
    assert ("non-vacuous" in out) == (not pac["vacuous"]) and pac["vacuous"] == (pac["bound"] >= pac["details"]["ceiling"]["value"])
    assert pac["details"]["run_error"] >= 0 and (pac["details"]["prior_sigma_encoder"], pac["details"]["prior_sigma"]) in ts.TRAIN_SAMPLE_PRIORS
    rows = {m["name"]: m for m in Store(tiny_store).measurements(run.id)}
    assert rows["certificate_train_sample_downstream_error"]["value"] == pytest.approx(pac["bound"])
    assert "S: the other 256 training images" in rows["certificate_train_sample_downstream_error"]["protocol"]
    assert {"certificate_train_sample_gibbs_error", "certificate_train_sample_run_error"} <= set(rows)
    # The NT-Xent risk in van Elst & Ghoshdastidar's setting: units of 64 bound-part images,
    # judged against a constant encoder's log(2B - 1).
    contrastive = checks["certificate.pac_bayes_contrastive_train_sample"]
    assert contrastive["details"]["inputs"]["units"] == 256 // 64
    assert contrastive["details"]["ceiling"]["value"] == pytest.approx(math.log(127)) and contrastive["vacuous"]
    assert "NT-Xent risk of the Gibbs prior encoder (batch 64, 4 units of the bound part)" in out and "vacuous" in out
    # and its transfer to the downstream cross-entropy (van Elst & Ghoshdastidar), vacuous whatever sigma is
    transfer = checks["certificate.transfer_van_elst_train_sample"]
    assert transfer["vacuous"] and transfer["bound"] >= math.log(4) and transfer["details"]["inputs"]["negatives"] == 126
    assert "whatever sigma is: vacuous" in out


@pytest.mark.parametrize("argv, message", [(["--train-sample", "--prior-fraction", "0.95"], "out of range"),
                                           (["--train-sample", "--encoder"], "choose one"),
                                           (["--train-sample", "--contrastive"], "choose one"),
                                           (["--train-sample", "--prior-fraction", "0.9"], "needs at least 100"),  # 51 of 512 left for S
                                           (["--prior-fraction", "0.6"], "an option of --train-sample")])
def test_train_sample_usage_errors(tiny_store, capsys, argv, message):
    (run, *_) = Store(tiny_store).runs()
    assert main(["--store", str(tiny_store), "certify", run.id, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_the_monte_carlo_step_with_repeated_draws_per_example_holds_its_level():
    """r draws per example, n·r terms: independent Bernoulli(p_i), p_i not equal; the kl upper
    limit of their mean must cover the mean probability in >= 1 - δ' of 4,000 simulations
    (two standard errors of slack)."""
    rng = np.random.default_rng(0)
    n, r, delta_mc, sims = 300, 10, 0.05, 4000
    p = rng.beta(0.3, 6.0, n)  # skewed per-example error probabilities, mean about 0.05
    covered = sum(cert.mc_error_upper(float(rng.binomial(r, p).sum() / (n * r)), n * r, delta_mc) >= p.mean() for _ in range(sims))
    assert covered / sims >= 1 - delta_mc - 2 * math.sqrt(delta_mc * (1 - delta_mc) / sims), covered / sims


@pytest.mark.slow
def test_the_training_sample_certificate_covers_the_true_gibbs_risk_in_at_least_95_percent_of_repetitions():
    """End to end through the same code (train_sample_posterior: posterior trained from the prior
    on the whole sample with the means moving, the prior grid, r draws per example, the kl
    inversion) on a problem whose risk is known: two overlapping Gaussian classes, a linear
    'encoder' and a probe as the prior, both fitted on the prior part; the Gibbs risk estimated
    on 10,000 fresh points (s.e. < 0.004). 200 repetitions; the certificate must cover the risk
    in at least 95% of them."""
    from clbounds.experiments.measurement.certify import GibbsEncoderProbe, with_bias

    def draw(n, g):
        y = torch.randint(0, 2, (n,), generator=g)
        return torch.randn(n, 4, generator=g) + 1.2 * (2 * y[:, None] - 1) * torch.tensor([1.0, 0.5, 0, 0]), y

    covered, reps, delta, delta_mc = 0, 200, 0.05, 0.01
    priors = ((0.01, 0.03), (0.03, 0.1))
    for rep in range(reps):
        g = torch.Generator().manual_seed(rep)
        x, y = draw(400, g)
        prior_idx, bound_idx = ts.split_training(400, 0.5, rep)
        torch.manual_seed(rep)
        encoder = torch.nn.Linear(4, 4).double()  # the prior 'encoder': fixed by the seed, not by the data
        with torch.no_grad():
            feats = encoder(x[prior_idx].double())
        w = torch.linalg.lstsq(with_bias(feats), torch.nn.functional.one_hot(y[prior_idx], 2).double()).solution.T
        gibbs = GibbsEncoderProbe(encoder.float(), 2)
        post = ts.train_sample_posterior(gibbs, x, y, x[bound_idx], y[bound_idx], w.flatten(), priors, 20, delta, delta_mc, g, lambda _: None)
        bound = cert.pac_bayes_kl_bound(cert.mc_error_upper(post.mean_error, post.mc_terms, delta_mc), post.kl, bound_idx.numel(), post.delta_pb)
        x_t, y_t = draw(10_000, g)
        risk = float(gibbs.per_example_errors(x_t, y_t, post.sigma_enc, post.mu, post.sigma, g, theta=post.theta).mean())
        covered += bound >= risk - 0.008  # two standard errors of the risk's estimate
    assert covered / reps >= 0.95, covered / reps


def test_the_tightness_table_shows_every_certificate_against_its_ceiling(tiny_store, capsys):
    """docs/examples/bound_tightness.py, the README's table, on the certified tiny run."""
    import runpy
    from pathlib import Path

    (run, *_) = [r for r in Store(tiny_store).runs() if r.config["seed"] == 0]
    if not any(c["theorem"] == "certificate.pac_bayes_train_sample" for c in Store(tiny_store).bound_checks(run.id)):
        assert main(["--store", str(tiny_store), "certify", run.id, "--train-sample", "--steps", "5"]) == 0
    script = runpy.run_path(str(Path(__file__).resolve().parents[1] / "docs" / "examples" / "bound_tightness.py"))
    text = script["table"](Store(tiny_store), [run.id])
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    pac = {c["theorem"]: c for c in Store(tiny_store).bound_checks(run.id)}["certificate.pac_bayes_train_sample"]
    row = rows["Training-sample certificate (PAC-Bayes, prior on half the training split)"]
    assert f"{pac['bound']:.3g} / {pac['details']['ceiling']['value']:.3g}" in row and ("(vacuous)" in row) == pac["vacuous"]
    assert "(vacuous)" in rows["Training-sample NT-Xent certificate (van Elst & Ghoshdastidar setting)"]
    assert rows["Huang et al. 2023, Theorem 1 (features)"].endswith("|  |")  # not measured: an empty cell, not a number


def test_the_prior_takes_as_many_steps_as_the_run_full_batch_or_not(monkeypatch):
    """Minibatch runs: the prior's epochs scale with the smaller part (warm-up too); a full-batch
    run (two_network, one step per epoch) keeps its epochs; the prior is never compiled."""
    from clbounds.experiments.config import config_from_dict
    from clbounds.experiments.training.runs import load_run_data

    from conftest import tiny_raw

    seen = []
    monkeypatch.setattr(ts, "train_in_memory", lambda cfg, data: seen.append((cfg, data.x_train.shape[0])) or None)
    raw = tiny_raw()
    raw["optim"].update({"epochs": 4, "batch_size": 32, "warmup_epochs": 2})
    raw["compile"] = True
    cfg = config_from_dict(raw)
    data = load_run_data(cfg)  # 128 training images: 4 steps an epoch, 16 in all
    _, epochs = ts.train_prior_encoder(cfg, data, torch.arange(64))  # 2 steps an epoch
    assert epochs == 8 and seen[-1][0].optim.warmup_epochs == 4 and not seen[-1][0].compile and seen[-1][1] == 64
    full = tiny_raw(method={"name": "two_network", "full_batch": True})
    full["optim"].update({"epochs": 4})
    cfg = config_from_dict(full)
    _, epochs = ts.train_prior_encoder(cfg, load_run_data(cfg), torch.arange(64))
    assert epochs == 4
