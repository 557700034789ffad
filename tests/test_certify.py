"""`clbounds certify`: the PAC-Bayes certificate on a trained run, end to end on a tiny run."""

from __future__ import annotations

import math

import pytest

from clbounds.experiments.measurement.certify import ENCODER_PRIORS
from clbounds.experiments.cli import main
from clbounds.experiments.store.db import Store

from conftest import TINY_ARGS

TINY = [*TINY_ARGS, "data.n_train=256", "data.n_test=128", "optim.epochs=2", "optim.batch_size=32", "eval.linear_steps=20"]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("certify") / "s"
    assert main(["--store", str(store), "train", "quick-simclr-synthetic", *TINY, "--quiet"]) == 0
    return store


def test_certify_a_run_gives_a_non_vacuous_certificate_with_its_floor_and_constants(tiny_store, capsys):
    (run,) = Store(tiny_store).runs()
    assert main(["--store", str(tiny_store), "certify", run.id, "--n", "2000", "--draws", "200", "--steps", "30"]) == 0
    out = capsys.readouterr().out
    assert "certified downstream error (Gibbs classifier: probe ~ posterior, encoder fixed) <=" in out and "non-vacuous" in out and "test-set bound" in out
    checks = {c["theorem"]: c for c in Store(tiny_store).bound_checks(run.id)}
    pac, floor = checks["certificate.pac_bayes_downstream"], checks["certificate.test_set"]
    assert pac["bound"] < 0.75 and not pac["vacuous"]  # chance is 1 - 1/4
    assert pac["holds"] and floor["holds"]  # each bound is above the error measured on held-out data
    inputs = pac["details"]["inputs"]
    assert inputs["n"] == 2000 and inputs["mc_draws"] == 200 and inputs["delta"] == 0.05 and inputs["priors"] == 4
    rows = {m["name"]: m for m in Store(tiny_store).measurements(run.id)}
    assert "2000 fresh draws of the run's synthetic generator" in rows["certificate_downstream_error"]["protocol"]
    assert rows["certificate_downstream_error"]["value"] == pytest.approx(pac["bound"])
    # The references beside it: the trivial predictor's error is the ceiling, and the plain
    # Clopper-Pearson bound of the prior-mean probe on all held-out data (S and T) is shown.
    reference = checks["certificate.heldout_prior_mean"]
    assert pac["details"]["ceiling"]["value"] == pytest.approx(rows["certificate_trivial_error"]["value"])
    assert "trivial predictor" in pac["details"]["ceiling"]["note"] and 0.7 <= rows["certificate_trivial_error"]["value"] <= 0.8
    assert reference["details"]["inputs"]["n"] == 2000 + 128 and reference["holds"]
    assert rows["certificate_heldout_prior_mean_bound"]["value"] == pytest.approx(reference["bound"])
    assert "reference: Clopper-Pearson bound of the prior-mean probe on all held-out data (n=2128)" in out


def test_certify_bad_arguments_are_usage_errors(tiny_store, capsys):
    (run,) = Store(tiny_store).runs()
    for argv in (["--delta", "0.7"], ["--n", "5"], ["--draws", "0"]):
        assert main(["--store", str(tiny_store), "certify", run.id, *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "out of range" in err
    assert main(["--store", str(tiny_store), "certify", run.id, "--encoder", "--contrastive"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose one" in err


def test_certify_with_the_encoder_in_the_posterior(tiny_store, capsys):
    (run,) = Store(tiny_store).runs()
    assert main(["--store", str(tiny_store), "certify", run.id, "--encoder", "--n", "1000", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "certified downstream error (Gibbs classifier: backbone and probe ~ posterior) <=" in out and "non-vacuous" in out
    checks = {c["theorem"]: c for c in Store(tiny_store).bound_checks(run.id)}
    pac = checks["certificate.pac_bayes_encoder_probe"]
    assert pac["bound"] < 0.75 and not pac["vacuous"] and pac["holds"]
    inputs = pac["details"]["inputs"]
    assert inputs["n"] == 1000 and inputs["mc_draws"] == 1000 and inputs["priors"] == len(ENCODER_PRIORS)
    assert pac["details"]["prior_sigma_encoder"] in {a for a, _ in ENCODER_PRIORS} and pac["details"]["weights"] > 650
    rows = {m["name"]: m for m in Store(tiny_store).measurements(run.id)}
    assert "one posterior draw per example of S (1000 Monte-Carlo terms)" in rows["certificate_encoder_probe_downstream_error"]["protocol"]


def test_the_gibbs_encoder_probe_is_the_deterministic_classifier_at_zero_variance_and_its_draws_average_right(tiny_store):
    import numpy as np
    import torch

    from clbounds.experiments.measurement.certify import GibbsEncoderProbe, _sample_errors, with_bias
    from clbounds.experiments.config import config_from_dict
    from clbounds.experiments.training.runs import load_encoder
    from clbounds.experiments.measurement.probes import extract_features
    from clbounds.experiments.training.runs import load_run_data

    (run,) = Store(tiny_store).runs()
    data = load_run_data(config_from_dict(run.config))
    model = load_encoder(run, data.image_shape).eval()
    gibbs = GibbsEncoderProbe(model, data.num_classes)
    x, y = data.x_test[:96], data.y_test[:96]
    plain = extract_features(model, x).double()
    per_example = gibbs.features(gibbs.flat.theta.expand(96, -1), x)  # vmapped, one θ per example
    assert torch.allclose(per_example, plain, atol=1e-5) and torch.allclose(gibbs.features(gibbs.flat.theta, x), plain, atol=1e-5)
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(data.num_classes * (plain.shape[1] + 1), generator=g, dtype=torch.float64)
    zero = torch.zeros_like(gibbs.flat.theta)
    fixed = (with_bias(plain) @ mu.view(data.num_classes, -1).T).argmax(1).ne(y).double().numpy()
    assert np.array_equal(gibbs.per_example_errors(x, y, zero, mu, torch.zeros_like(mu), g), fixed)
    # probe noise only: one draw per example estimates the same Gibbs error as whole probes scored on every example
    sigma = torch.full_like(mu, 0.5)
    per = np.mean([gibbs.per_example_errors(x, y, zero, mu, sigma, g).mean() for _ in range(100)])
    whole = _sample_errors(plain, y, mu, sigma, 2000, g).mean()
    assert per == pytest.approx(whole, abs=0.02)


def test_certify_without_a_generator_splits_the_test_split_in_two(tmp_path, capsys):
    store = tmp_path / "s"
    assert main(["--store", str(store), "train", "quick-simclr-digits", *[o for o in TINY if not o.startswith(("data.n_", "data.num_classes"))], "--quiet"]) == 0
    (run,) = Store(store).runs()
    assert main(["--store", str(store), "certify", run.id, "--draws", "100", "--steps", "10"]) == 0
    protocol = {m["name"]: m for m in Store(store).measurements(run.id)}["certificate_downstream_error"]["protocol"]
    assert "S: a random half of the test split (n=225); T: the other half (n=225)" in protocol


def test_the_contrastive_certificate_bounds_the_nt_xent_risk_of_the_gibbs_encoder(tiny_store, capsys):
    (run,) = Store(tiny_store).runs()
    assert main(["--store", str(tiny_store), "certify", run.id, "--contrastive", "--units", "40", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "certified NT-Xent risk of the Gibbs encoder <=" in out and f"a constant encoder's risk {math.log(2 * 64 - 1):.3f}" in out
    check = {c["theorem"]: c for c in Store(tiny_store).bound_checks(run.id)}["certificate.pac_bayes_contrastive"]
    inputs = check["details"]["inputs"]
    assert inputs["units"] == 40 and inputs["loss_low"] < check["measured"] < check["bound"] < inputs["loss_high"] and check["holds"]
    # judged against a collapsed encoder, log(2B - 1), not against the largest loss any encoder reaches
    assert check["details"]["ceiling"]["value"] == pytest.approx(math.log(2 * 64 - 1)) and check["vacuous"] == (check["bound"] >= math.log(127))
    assert ("non-vacuous" in out) == (not check["vacuous"])
    assert check["details"]["label"] == "reconstructed"
    transfer = {c["theorem"]: c for c in Store(tiny_store).bound_checks(run.id)}["certificate.transfer_van_elst"]
    assert transfer["details"]["inputs"]["contrastive_bound"] == pytest.approx(check["bound"]) and "van Elst & Ghoshdastidar's transfer" in out


def test_the_contrastive_certificate_refuses_runs_it_does_not_apply_to(tmp_path, capsys):
    store = tmp_path / "s"
    assert main(["--store", str(store), "train", "quick-barlow-synthetic", *TINY, "--quiet"]) == 0
    (run,) = Store(store).runs()
    assert main(["--store", str(store), "certify", run.id, "--contrastive"]) == 2
    assert "bounds the NT-Xent risk" in capsys.readouterr().err


@pytest.mark.slow
def test_the_probe_certificate_covers_the_true_gibbs_risk_in_at_least_95_percent_of_repetitions():
    """End to end through the certificate's own code (posterior search over priors, Monte-Carlo
    step, kl inversion) on a problem whose risk is known: two overlapping Gaussian classes, a
    prior probe fitted on an independent training sample, the Gibbs risk estimated on 10,000
    fresh points (standard error < 0.004). 200 repetitions; the bound must cover the risk in
    at least 95% of them (it holds with probability >= 0.95 each time)."""
    import torch

    from clbounds.bounds import certificates as cert
    from clbounds.experiments.measurement.certify import _probe_posterior, with_bias

    def draw(n, g):
        y = torch.randint(0, 2, (n,), generator=g)
        return (torch.randn(n, 4, generator=g, dtype=torch.float64) + 1.2 * (2 * y[:, None] - 1) * torch.tensor([1.0, 0.5, 0, 0], dtype=torch.float64)), y

    covered, reps = 0, 200
    delta, delta_mc, priors = 0.05, 0.01, (0.03, 0.1)
    delta_pb = (delta - delta_mc) / len(priors)
    for rep in range(reps):
        g = torch.Generator().manual_seed(rep)
        x_train, y_train = draw(200, g)
        w = torch.linalg.lstsq(with_bias(x_train), torch.nn.functional.one_hot(y_train, 2).double()).solution.T  # prior mean: least squares on the training sample
        x_s, y_s = draw(300, g)
        x_t, y_t = draw(10_000, g)
        post = _probe_posterior(x_s, y_s, x_t, y_t, w.flatten(), priors, 100, delta_pb, delta_mc, 20, g, "simulation", None)
        mu, kl, mc_terms, mean_error, gibbs_t = post[:5]
        bound = cert.pac_bayes_kl_bound(cert.mc_error_upper(mean_error, mc_terms, delta_mc), kl, 300, delta_pb)
        covered += bound >= gibbs_t - 0.008  # two standard errors of the risk's estimate on T
    assert covered / reps >= 0.95, covered / reps


def test_the_bound_sample_shares_no_image_with_training_and_differs_between_seeds():
    from clbounds.experiments.config import config_from_dict
    from clbounds.experiments.measurement.certify import _samples
    from clbounds.experiments.training.runs import load_run_data

    from conftest import tiny_raw

    seen = []
    for seed in (0, 1):
        cfg = config_from_dict(tiny_raw(seed=seed))
        data = load_run_data(cfg)
        x_s, _, x_t, _, how = _samples(cfg, data, 500)
        train = {bytes(x.numpy().tobytes()) for x in data.x_train}
        assert "fresh draws" in how and not any(bytes(x.numpy().tobytes()) in train for x in x_s)
        assert not any(bytes(x.numpy().tobytes()) in train for x in x_t)
        seen.append({bytes(x.numpy().tobytes()) for x in x_s})
    assert not seen[0] & seen[1]
