import contextlib
import json

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from clbounds.experiments.cli import main

from conftest import tiny_raw


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(optim={"name": "sgd", "lr": 0.05, "epochs": 1, "batch_size": 32})))
    return path


def test_train_eval_runs_export(tmp_path, config_file, capsys):
    store = str(tmp_path / "store")
    assert main(["--store", store, "train", str(config_file), "seed=1", "--quiet", "--eval"]) == 0
    out = capsys.readouterr().out
    assert "done" in out and "knn k=10 t=0.1 cosine-weighted offline final-epoch test" in out

    assert main(["--store", store, "runs", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert len(runs) == 1 and runs[0]["status"] == "done" and runs[0]["config"]["seed"] == 1

    assert main(["--store", store, "eval", runs[0]["id"][:4], "--random-init"]) == 0
    assert "random-init" in capsys.readouterr().out

    assert main(["--store", store, "export", "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "run,name,value,protocol,created" and sum("random-init" in l for l in lines) == 4


def test_config_errors_exit_2_with_one_line(tmp_path, config_file, capsys):
    store = str(tmp_path / "store")
    assert main(["--store", store, "train", str(config_file), "optim.lr=-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "optim.lr=-1.0 is out of range" in err and "Traceback" not in err
    assert main(["--store", store, "eval", "nope"]) == 2
    assert "no run with id 'nope'" in capsys.readouterr().err


def test_missing_dataset_exits_1_naming_the_path(tmp_path, config_file, capsys, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "torchvision", None)  # no download route
    store = str(tmp_path / "store")
    code = main(["--store", store, "train", str(config_file), "data.name=cifar10", f"data.root={tmp_path}/data", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "cifar-10-batches-py" in err and "Traceback" not in err


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["train", "eval", "runs", "export", "--json", "--csv", "--eval", "x=1", "quick-simclr-synthetic", "optim.lr=0", "seed=-1", "=", "--store"]), max_size=4))
def test_fuzzed_arguments_never_trace_back(tmp_path_factory, argv):
    store = str(tmp_path_factory.mktemp("s"))
    # A fuzzed "--store seed=-1" names a folder relative to the working directory: keep it in tmp.
    with contextlib.chdir(store):
        try:
            code = main(["--store", store, *argv] if "train" not in argv or "quick-simclr-synthetic" not in argv else ["--store", store, "runs"])
        except SystemExit as exit_:  # argparse usage errors
            code = exit_.code
    assert code in (0, 1, 2)
