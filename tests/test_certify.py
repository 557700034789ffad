"""`clbounds certify`: the PAC-Bayes certificate on a trained run, end to end on a tiny run."""

from __future__ import annotations

import pytest

from clbounds.experiments.cli import main
from clbounds.experiments.store import Store

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
    assert "certified downstream error (Gibbs classifier) <=" in out and "non-vacuous" in out and "test-set bound" in out
    checks = {c["theorem"]: c for c in Store(tiny_store).bound_checks(run.id)}
    pac, floor = checks["certificate.pac_bayes_downstream"], checks["certificate.test_set"]
    assert pac["bound"] < 0.75 and not pac["vacuous"]  # chance is 1 - 1/4
    assert pac["holds"] and floor["holds"]  # each bound is above the error measured on held-out data
    inputs = pac["details"]["inputs"]
    assert inputs["n"] == 2000 and inputs["mc_draws"] == 200 and inputs["delta"] == 0.05 and inputs["priors"] == 4
    rows = {m["name"]: m for m in Store(tiny_store).measurements(run.id)}
    assert "2000 fresh draws of the run's synthetic generator" in rows["certificate_downstream_error"]["protocol"]
    assert rows["certificate_downstream_error"]["value"] == pytest.approx(pac["bound"])


def test_certify_bad_arguments_are_usage_errors(tiny_store, capsys):
    (run,) = Store(tiny_store).runs()
    for argv in (["--delta", "0.7"], ["--n", "5"], ["--draws", "0"]):
        assert main(["--store", str(tiny_store), "certify", run.id, *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "out of range" in err


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
    assert "certified NT-Xent risk of the Gibbs encoder <=" in out and "non-vacuous" in out
    check = {c["theorem"]: c for c in Store(tiny_store).bound_checks(run.id)}["certificate.pac_bayes_contrastive"]
    inputs = check["details"]["inputs"]
    assert inputs["units"] == 40 and inputs["loss_low"] < check["measured"] < check["bound"] < inputs["loss_high"] and check["holds"]
    assert check["details"]["label"] == "reconstructed"


def test_the_contrastive_certificate_refuses_runs_it_does_not_apply_to(tmp_path, capsys):
    store = tmp_path / "s"
    assert main(["--store", str(store), "train", "quick-barlow-synthetic", *TINY, "--quiet"]) == 0
    (run,) = Store(store).runs()
    assert main(["--store", str(store), "certify", run.id, "--contrastive"]) == 2
    assert "bounds the NT-Xent risk" in capsys.readouterr().err
