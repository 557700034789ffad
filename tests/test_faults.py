"""Faults and bad input through the CLI's one error boundary: a usage or config error exits 2
with one line naming the key or file, a runtime failure exits 1 with one line saying what
failed and what was kept, and no traceback escapes unless --debug asks for it; a run that
fails for any reason is marked ``failed``, never left ``running``."""

import sqlite3
import time

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import clbounds.experiments.train as train_mod
from clbounds.experiments.cli import main
from clbounds.experiments.config import ConfigError, load_config, load_yaml
from clbounds.experiments.store import Store
from clbounds.experiments.verify import load_preset

from conftest import tiny_raw


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def _one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(optim={"name": "sgd", "lr": 0.05, "epochs": 1, "batch_size": 32})))
    return path


# ---- config loading is bounded -----------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                                                      for p, c in zip("abcdefgh", "bcdefghi"))


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)  # 9^9 leaves once expanded; PyYAML alone would build them all
    t = time.perf_counter()
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(path))
    assert code == 2 and _one_line(err) and "aliases" in err and str(path) in err and time.perf_counter() - t < 5


@pytest.mark.parametrize("text, words", [
    ("optim: {lr: 0.1\n", "not valid YAML at line"),
    ("- 1\n- 2\n", "must be a mapping"),
    ("7\n", "must be a mapping"),
    ("!!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
    ("seed: 100000000000000000000\n", "seed=100000000000000000000 is out of range"),
    ("device: bogus\n", "device='bogus' is not a device"),
])
def test_bad_config_files_are_one_line_config_errors(tmp_path, capsys, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(path), "optim.epochs=1")
    assert code == 2 and _one_line(err) and words in err


def test_a_binary_or_huge_config_file_is_refused(tmp_path, capsys):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(path))
    assert code == 2 and _one_line(err) and "not a text" in err
    path.write_text("name: x\n" + "#" * (2 << 20))
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(path))
    assert code == 2 and _one_line(err) and "at most" in err


@pytest.mark.parametrize("preset, words", [
    ({"name": "x", "base": "quick-simclr-synthetic", "runs": [1, 2]}, "runs must be a non-empty list"),
    ({"name": "x", "base": "quick-simclr-synthetic", "runs": {"a": []}}, "runs must be a non-empty list"),
    ({"name": "x", "base": "quick-simclr-synthetic", "seeds": 5, "runs": [{"label": "a"}]}, "seeds must be a non-empty list"),
    ({"base": "quick-simclr-synthetic", "runs": [{"label": "a"}]}, "name must be a non-empty string"),
    ({"name": "x", "base": "quick-simclr-synthetic", "runs": [{"label": "a", "overrides": "seed=1"}]}, "each run is"),
    ({"name": "x", "base": "quick-simclr-synthetic", "common": [3], "runs": [{"label": "a"}]}, "common must be a list"),
    ({"name": "x", "base": "quick-simclr-synthetic", "runs": [{"label": "a"}, {"label": "a"}]}, "labels must be unique"),
    ([1, 2], "must be a mapping"),
])
def test_malformed_presets_are_one_line_config_errors(tmp_path, capsys, preset, words):
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    with pytest.raises(ConfigError, match=words.split()[0]):
        load_preset(path)
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "verify", "--preset", str(path))
    assert code == 2 and _one_line(err) and words in err


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12))
def test_random_yaml_structures_never_escape_as_tracebacks(tmp_path, data):
    """Anything YAML can hold, as a config and as a preset: a config error or a valid load."""
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data))
    for load in (load_config, load_preset):
        try:
            load(path)
        except ConfigError as err:
            assert "\n" not in str(err).strip() or load is load_config  # one line (config paths may list names)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_a_config_error_or_a_config(data):
    try:
        load_yaml(data.decode("utf-8", errors="replace"), "fuzz")
    except ConfigError:
        pass


# ---- runtime failures: exit 1, one line, and no run left running -------------------------

def test_a_corrupted_store_database_exits_1_without_a_traceback(tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    (store / "clbounds.sqlite").write_bytes(b"this is not a database" * 100)
    code, err = _run(capsys, "--store", str(store), "runs")
    assert code == 1 and _one_line(err) and "DatabaseError" in err and "--debug" in err
    with pytest.raises(sqlite3.DatabaseError):  # --debug shows what happened
        main(["--store", str(store), "runs", "--debug"])


def test_any_training_failure_marks_the_run_failed_with_what_was_kept(tmp_path, config_file, capsys, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_mod, "save_weights", disk_full)
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(config_file), "--quiet")
    assert code == 1 and _one_line(err) and "No space left on device" in err
    (run,) = Store(tmp_path / "s").runs()
    assert run.status == "failed" and "OSError" in run.message and "checkpoint is kept" in run.message  # the state was written before the weights

    monkeypatch.undo()  # the disk has room again: the same command resumes and finishes
    assert main(["--store", str(tmp_path / "s"), "train", str(config_file), "--quiet"]) == 0
    assert Store(tmp_path / "s").runs()[0].status == "done"


def test_an_interrupted_run_is_failed_not_running(tmp_path, config_file, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "load_run_data", interrupt)
    assert main(["--store", str(tmp_path / "s"), "train", str(config_file), "--quiet"]) == 130
    (run,) = Store(tmp_path / "s").runs()
    assert run.status == "failed" and run.message.startswith("interrupted; no checkpoint")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_is_a_config_error(tmp_path, config_file, capsys):
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(config_file), "device=cuda", "--quiet")
    assert code == 2 and _one_line(err) and "sees no CUDA device" in err
    assert Store(tmp_path / "s").runs()[0].status == "failed"  # recorded, not left running
