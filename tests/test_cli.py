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
    import pandas as pd  # the per-epoch log and the t-SNE map of the test embeddings sit in the run folder

    run_dir = tmp_path / "store" / runs[0]["id"]
    assert len(pd.read_csv(run_dir / "metrics.csv")) == 1 and set(pd.read_csv(run_dir / "tsne.csv").columns) == {"x", "y", "label"}

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


def test_cli_conventions_version_global_options_tidy_export_and_a_closed_pipe(tmp_path, capsys):
    import io
    import subprocess
    import sys

    import pandas as pd

    from clbounds.experiments.store.db import Store

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("clbounds ")
    store = Store(tmp_path / "s")
    store.upsert_run("r1", {"name": "x", "method": {"name": "simclr"}, "data": {"name": "synthetic"}, "encoder": {"arch": "mlp"}}, status="done")
    store.add_measurements("r1", [(f"term{i}", float(i), "p, with a comma") for i in range(3000)])
    store.add_bound_checks("r1", [{"theorem": "t", "bound": 1.0, "measured": 0.5, "holds": True, "tightness": 2.0, "assumptions_met": True, "vacuous": True, "informative": None}])
    assert main(["runs", "--store", str(tmp_path / "s")]) == 0 and "r1" in capsys.readouterr().out  # --store after the subcommand
    assert main(["--store", str(tmp_path / "s"), "export", "--what", "bounds", "--csv"]) == 0
    checks = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(checks.columns) == ["run", "theorem", "bound", "measured", "holds", "tightness", "assumptions_met", "vacuous", "informative", "resolved", "verdict"]
    assert checks.loc[0, "verdict"] == "vacuous"
    assert main(["--store", str(tmp_path / "s"), "export"]) == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 3000  # one table per call: read_csv parses it
    assert main(["--store", str(tmp_path / "s"), "export", "--json", "--out", str(tmp_path / "out")]) == 0
    assert len(json.loads((tmp_path / "out" / "measurements.json").read_text())) == 3000 and (tmp_path / "out" / "bounds.json").is_file()
    assert main(["--store", str(tmp_path / "s"), "export", "--what", "bounds", "--out", str(tmp_path / "only")]) == 0
    assert [p.name for p in (tmp_path / "only").iterdir()] == ["bounds.csv"]
    # `clbounds export --csv | head -1` exits 0, with nothing on stderr
    proc = subprocess.run(f"'{sys.executable}' -m clbounds.experiments.cli --store '{tmp_path / 's'}' export --csv | head -1; exit ${{PIPESTATUS[0]}}",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "run,name,value,protocol,created" and "Error" not in proc.stderr, proc.stderr


def test_help_lists_every_term_group_and_imports_no_torch():
    import subprocess
    import sys

    from clbounds.experiments.measurement.groups import TERM_GROUPS
    from clbounds.experiments.measurement.registry import GROUP_NAMES

    assert GROUP_NAMES == tuple(TERM_GROUPS)
    code = ("import contextlib, io, sys; from clbounds.experiments.cli import main; out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit): main(['measure', '--help'])\n"
            "assert 'torch' not in sys.modules, 'torch imported'; assert 'cacr_weights' in out.getvalue() and 'autoattack' in out.getvalue(), out.getvalue()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_runs_lists_a_store_without_importing_torch(tmp_path):
    import subprocess
    import sys

    code = (f"import sys; from clbounds.experiments.cli import main; assert main(['--store', {str(tmp_path / 's')!r}, 'runs']) == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")  # `clbounds runs` stays a quarter of a second (README, CLI start-up)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_measure_takes_measure_overrides_only(tmp_path, capsys):
    from clbounds.experiments.store.db import Store

    store = Store(tmp_path / "s")
    store.upsert_run("r1", {"name": "x", "method": {"name": "simclr"}, "data": {"name": "synthetic"}, "encoder": {"arch": "mlp"}}, status="done")
    assert main(["--store", str(tmp_path / "s"), "measure", "r1", "optim.lr=0.1"]) == 2
    assert "measure.<key>=value overrides only" in capsys.readouterr().err
    # an override after --terms is an override, not a term group
    assert main(["--store", str(tmp_path / "s"), "measure", "r1", "--terms", "sharpness", "optim.lr=0.1"]) == 2
    assert "measure.<key>=value overrides only" in capsys.readouterr().err
    # an unknown run is a usage error in one line
    assert main(["--store", str(tmp_path / "s"), "measure", "nope"]) == 2
    assert capsys.readouterr().err.strip().startswith("clbounds: error: no run with id 'nope'")


def test_a_broken_pipe_that_is_not_stdout_fails(tmp_path, capsys, monkeypatch):
    import clbounds.experiments.cli as cli

    def broken(args, store):
        raise BrokenPipeError("worker pipe closed")

    monkeypatch.setattr(cli, "cmd_runs", broken)
    assert main(["--store", str(tmp_path / "s"), "runs"]) == 1
    assert "worker pipe closed" in capsys.readouterr().err


def test_bounds_json(tmp_path, capsys):
    from clbounds.experiments.store.db import Store

    from conftest import huang_terms

    store = Store(tmp_path / "s")
    store.upsert_run("r1", {"name": "x", "method": {"name": "simclr"}, "data": {"name": "synthetic"}, "encoder": {"arch": "mlp"}}, status="done")
    store.add_measurements("r1", [(k, float(v), "p") for k, v in huang_terms().items()])
    assert main(["--store", str(tmp_path / "s"), "bounds", "r1", "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)
    t1 = next(c for c in checks if c["theorem"] == "huang2023.theorem1")
    assert {"bound", "measured", "vacuous", "informative", "verdict", "details"} <= set(t1) and t1["run"] == "r1"


def test_configs_lists_and_shows_the_bundled_configs_and_presets_without_touching_a_store(tmp_path, capsys, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "quick-simclr-synthetic" in out and "  cpu" in out and "configs show NAME" in out
    assert main(["configs", "show", "quick-simclr-synthetic"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["name"] == "quick-simclr-synthetic" and "measure" in shown and "eps" in shown["measure"]  # every key, defaults included
    assert main(["configs", "show", "quick"]) == 0 and "runs:" in capsys.readouterr().out
    for argv in (["configs", "show", "nope"], ["configs", "show"], ["configs", "list", "x"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # listing configs makes no store


def test_help_shows_examples_and_measure_help_lists_every_measure_key(capsys):
    import dataclasses

    from clbounds.experiments.config import MeasureConfig

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "examples:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["measure", "--help"])
    out = capsys.readouterr().out
    assert all(f"measure.{f.name}=" in out for f in dataclasses.fields(MeasureConfig))


def test_every_command_help_ends_with_two_or_three_examples_that_parse(capsys):
    """Each subcommand's --help shows examples, and each example is a valid command line."""
    import argparse
    import shlex

    from clbounds.experiments.cli import COMMAND_EXAMPLES, build_parser, parse_command_line

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(COMMAND_EXAMPLES) == set(commands)
    for name in commands:
        assert 2 <= len(COMMAND_EXAMPLES[name]) <= 3, name
        with pytest.raises(SystemExit):
            main([name, "--help"])
        out = capsys.readouterr().out
        assert "examples:" in out, name
        for line, _ in COMMAND_EXAMPLES[name]:
            assert line in out
            args = parse_command_line(shlex.split(line.split(" > ")[0])[1:])  # exits 2 on an example that does not parse
            assert args.command == name
