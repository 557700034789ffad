"""Hostile and careless input at the trust boundary (issue 29): each case is refused with a clear
error or handled literally, writes nothing outside the store and never hangs."""

from __future__ import annotations

import pytest

from clbounds.experiments.store.db import Store, UnknownRunError


def _config(name: str) -> dict:
    return {"name": name, "method": {"name": "simclr"}, "data": {"name": "synthetic"}, "encoder": {"arch": "mlp"}}


def _two_runs(store: Store) -> None:
    store.upsert_run("ab12cd34ef", _config("base"), status="done")
    store.upsert_run("ab99cd34ef", _config("import-tv"), status="done")


@pytest.mark.parametrize("reference", ["%", "_", "a_", "ab%", "%ef", "", "x" * 201])
def test_run_references_match_literally_never_as_a_pattern(store, reference):
    _two_runs(store)
    with pytest.raises(UnknownRunError):
        store.find_run(reference)


def test_run_references_are_an_id_a_unique_prefix_or_a_name(store):
    _two_runs(store)
    assert store.find_run("ab12cd34ef").id == "ab12cd34ef"
    assert store.find_run("ab9").id == "ab99cd34ef"
    assert store.find_run("import-tv").id == "ab99cd34ef"
    with pytest.raises(UnknownRunError, match="ambiguous"):
        store.find_run("ab")


HOSTILE_LABELS = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "two\n| forged | row |", "=HYPERLINK(\"http://x\")", "price $\\frac$ per run"]


def test_hostile_run_labels_are_escaped_in_every_format_of_the_report(tmp_path):
    import csv

    from clbounds.experiments.config import config_from_dict
    from clbounds.figures.verify_report import make_report

    from conftest import tiny_raw

    store = Store(tmp_path / "store")
    runs, labels = [], {}
    for i, label in enumerate(HOSTILE_LABELS):
        cfg = config_from_dict(tiny_raw(color_strength=0.2 + 0.1 * i))
        store.upsert_run(cfg.run_id(), cfg.to_dict(), status="done")
        store.add_measurements(cfg.run_id(), [("knn_accuracy", 0.5 + 0.05 * i, "knn k=20 t=0.1 cosine-weighted offline final-epoch test"),
                                               ("info_nce", 3.0 - 0.1 * i, "NT-Xent"), ("alignment", 0.1 * i, "features")])
        store.add_bound_checks(cfg.run_id(), [{"theorem": "arora2019.one_negative", "bound": 1.0, "measured": 2.0, "holds": False, "tightness": 0.5,
                                               "assumptions_met": True, "resolved": True, "details": {"label": "paper"}}])
        runs.append(cfg.run_id())
        labels[cfg.run_id()] = label
    md, page, _ = make_report(store.root, runs, labels, tmp_path / "report", "title <b>$x$</b>", ["clbounds verify --preset ```evil"])
    text = md.read_text()
    assert "<script>" not in text and "<img" not in text and "<b>" not in text
    assert "| forged | row |" not in text  # a newline in a label cannot start a table row
    assert "\n```evil" not in text and text.count("```") % 2 == 0
    assert "<script>" not in page.read_text() and "<img src=x" not in page.read_text()
    with open(tmp_path / "report" / "runs.csv", newline="") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert not any(c.startswith(("=", "+", "@")) for c in cells), [c for c in cells if c.startswith(("=", "+", "@"))]


def test_a_preset_name_cannot_leave_the_store(tmp_path):
    from clbounds.experiments.names import slug

    for name in ("../../outside/pwned", "/etc/passwd", "..", ".", "-rf", "a/../../b", "x" * 500, ""):
        s = slug(name)
        assert s and "/" not in s and not s.startswith((".", "-")) and len(s) <= 80
        assert (tmp_path / s).resolve().parent == tmp_path.resolve()


def _spool_dir(store: Store):
    store.upsert_run("run0", _config("x"), status="done")
    folder = store.root / "run0" / "spool"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _record(op: str, args: dict) -> str:
    import json

    return json.dumps({"format": "clbounds-spool-1", "run": "run0", "op": op, "args": args, "at": 1.0})


def test_a_fifo_a_device_link_and_an_oversized_spool_file_are_refused_without_blocking(store, tmp_path):
    import os
    import threading

    from clbounds.experiments.store.spool import SPOOL_FILE_MAX_BYTES, import_spool

    folder = _spool_dir(store)
    os.mkfifo(folder / "00000000000000000001-h-1-000001.json")  # open() of a FIFO blocks until a writer comes
    (folder / "00000000000000000002-h-1-000002.json").symlink_to("/dev/zero")
    outside = tmp_path / "outside.json"
    outside.write_text(_record("set_status", {"status": "failed", "message": "from outside"}))
    (folder / "00000000000000000003-h-1-000003.json").symlink_to(outside)
    with open(folder / "00000000000000000004-h-1-000004.json", "wb") as f:
        f.truncate(SPOOL_FILE_MAX_BYTES + 1)  # sparse: no disk used
    logged: list[str] = []
    done = threading.Event()
    worker = threading.Thread(target=lambda: (import_spool(store, log=logged.append), done.set()), daemon=True)
    worker.start()
    assert done.wait(20), "importing the spool hung"
    assert len(logged) == 4 and all("left in place" in m for m in logged), logged
    assert store.get_run("run0").status == "done"


def test_a_spool_record_with_a_non_finite_number_is_refused(store):
    from clbounds.experiments.store.spool import import_spool

    folder = _spool_dir(store)
    (folder / "00000000000000000001-h-1-000001.json").write_text(_record("add_measurements", {"rows": [["t", float("inf"), "p"]]}))
    (folder / "00000000000000000002-h-1-000002.json").write_text(_record("add_measurements", {"rows": [["u", 1e400, "p"]]}).replace("1e+400", "1e400"))
    logged: list[str] = []
    assert import_spool(store, log=logged.append) == 0
    assert len(logged) == 2 and store.measurements("run0") == []


def test_a_non_finite_measurement_never_enters_the_store(store):
    store.upsert_run("run0", _config("x"), status="done")
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="non-finite"):
            store.add_measurements("run0", [("t", bad, "p")])
    assert store.measurements("run0") == []


@pytest.mark.parametrize("option,value", [("std", "1e-300,1,1"), ("std", "0,1,1"), ("mean", "nan,0.5,0.5"), ("std", "inf,1,1"), ("mean", "1e9,0,0")])
def test_a_normalisation_outside_its_range_is_a_usage_error(option, value):
    from clbounds.experiments.models.external import parse_floats

    with pytest.raises(ValueError, match="finite values in"):
        parse_floats(value, option)


def test_the_api_refuses_a_label_that_would_allocate_millions_of_classes():
    import torch

    import clbounds

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    x = torch.rand(8, 3, 8, 8)
    y = torch.zeros(8, dtype=torch.int64)
    y[0] = 10**7
    with pytest.raises(ValueError, match="K <= 100000"):
        clbounds.measure(net, (x, y, x, y), terms=["geometry"], controls=False)


def _resnet_state() -> dict:
    from clbounds.experiments.models.external import TorchvisionResNet

    return {f"backbone.{k}": v for k, v in TorchvisionResNet("resnet18", cifar_stem=True).state_dict().items()}


@pytest.mark.parametrize("case", ["stride0", "head_index", "too_many"])
def test_a_checkpoint_that_declares_huge_sizes_is_refused_before_allocation(tmp_path, case, capsys):
    import subprocess
    import sys

    import torch

    state = {} if case == "too_many" else _resnet_state()
    if case == "stride0":
        state["backbone.bn1.running_mean"] = torch.zeros(1).expand(4_000_000_000)  # 4 bytes on disk, 16 GB if copied
    elif case == "head_index":
        state["projector.5000000.weight"] = torch.zeros(2, 2)
    else:
        state = {f"t{i}": torch.zeros(1) for i in range(20_001)}
    path = tmp_path / "hostile.pt"
    torch.save(state, path)
    # In a subprocess with its address space capped at 3 GB: an allocation of the declared size fails loudly.
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from clbounds.experiments.cli import main; "
            f"sys.exit(main(['--store', {str(tmp_path / 'store')!r}, 'import', {str(path)!r}, '--format', 'solo-learn', '--arch', 'resnet18']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (1, 2), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "limit" in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) <= 2  # one message (and at most the line saying what was kept)


def test_a_term_that_cannot_be_computed_is_a_stored_row_with_its_reason_not_a_silent_gap(store):
    """A backbone whose blocks have no certified Lipschitz bound: the gap is a row, the API lists
    it in ``skipped``, and Theorem 1 says why it is not evaluated (not "missing terms")."""
    import torch

    import clbounds
    from clbounds.bounds.common import verdict
    from clbounds.bounds.display import format_bound_table
    from clbounds.experiments.pipeline.bounds_step import evaluate_bounds

    class Gated(torch.nn.Module):  # y = x * sigmoid(Wx): no rigorous product bound in theory.geometry
        def __init__(self):
            super().__init__()
            self.flat, self.lin = torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 8)

        def forward(self, x):
            h = self.lin(self.flat(x))
            return h * torch.sigmoid(h)

    rows = clbounds.measure(Gated(), "synthetic", terms=["lipschitz"], store=store, run="gated",
                            data_options={"image_size": 8, "n_train": 40, "n_test": 20, "num_classes": 4}, n_samples=16, views=2, controls=False)
    assert "lipschitz/lipschitz_upper" in rows.skipped and "lipschitz_upper" not in rows.terms
    record = store.find_run(rows.run)
    checks = {c.theorem: c for c in evaluate_bounds(record, store)}
    t1 = checks["huang2023.theorem1"]
    assert verdict(t1) == "not evaluated" and "lipschitz_upper" in t1.details["unavailable"]
    table = format_bound_table(list(checks.values()))
    assert "not computable for this encoder: lipschitz_upper" in table


def test_a_stopped_measure_resumes_after_the_groups_it_stored(store, monkeypatch):
    """Killed during its third group, `measure` keeps the two groups (and their controls' place)
    it had stored with these settings and computes the rest; ``force`` recomputes everything."""
    from clbounds.experiments.measurement import measure as measure_module
    from clbounds.experiments.measurement.groups import TERM_GROUPS
    from conftest import trained_tiny

    record = trained_tiny(store)
    groups = ["losses", "geometry", "lipschitz"]
    real = TERM_GROUPS["lipschitz"]

    def killed(ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(TERM_GROUPS, "lipschitz", killed)
    with pytest.raises(KeyboardInterrupt):
        measure_module.measure(record, store, groups)
    monkeypatch.setitem(TERM_GROUPS, "lipschitz", real)
    logged: list[str] = []
    measure_module.measure(record, store, groups, log=logged.append)
    assert any("kept, stored with these settings: losses, geometry" in line for line in logged), logged
    assert [line for line in logged if line.strip().startswith("measured ") and "(" in line][0].strip().startswith("measured lipschitz (1/1)")
    names = {m["name"] for m in store.measurements(record.id)}
    assert {"info_nce", "alignment", "lipschitz_lower", "random_init/alignment"} <= names
    logged.clear()
    measure_module.measure(record, store, groups, log=logged.append, force=True)
    assert not any("kept" in line for line in logged) and any(line.strip().startswith("measured losses (1/3)") for line in logged)


@pytest.mark.parametrize("variable,value,message", [
    ("WORLD_SIZE", "abc", "WORLD_SIZE='abc' is not an integer"),
    ("WORLD_SIZE", "100000000", "WORLD_SIZE=100000000 is outside [1, 4096]"),
    ("RANK", "-1", "RANK=-1 is outside [0, 0]"),
    ("LOCAL_RANK", "x", "LOCAL_RANK='x' is not an integer"),
    ("CLBOUNDS_SPOOL", "yes", "CLBOUNDS_SPOOL='yes' must be 1"),
    ("CLBOUNDS_SPOOL_SNAPSHOT", "/dev/zero", "is not a regular file"),
    ("CLBOUNDS_HOME", "runs\nforged", "CLBOUNDS_HOME is not a usable value"),
])
def test_a_bad_environment_variable_is_a_usage_error_before_anything_runs(tmp_path, monkeypatch, capsys, variable, value, message):
    """The environment crosses the trust boundary in experiments/environment.py: one line, exit
    2, nothing trained or opened (an int() traceback deep in training before)."""
    from clbounds.experiments.cli import main

    from conftest import TINY_ARGS

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    assert main(["--store", str(tmp_path / "s"), "train", "quick-simclr-synthetic", *TINY_ARGS, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no run folder


def test_the_environment_is_read_with_its_defaults_and_ranges(monkeypatch, tmp_path):
    from clbounds.experiments import environment

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "CLBOUNDS_HOME", "CLBOUNDS_SPOOL", "CLBOUNDS_SPOOL_SNAPSHOT"):
        monkeypatch.delenv(name, raising=False)
    assert (environment.world_size(), environment.rank(), environment.local_rank()) == (1, 0, 0)
    assert environment.store_home().name == "runs" and not environment.spool_mode() and environment.snapshot_path() is None
    monkeypatch.setenv("WORLD_SIZE", " 4 ")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("CLBOUNDS_HOME", "")  # empty is unset
    assert (environment.world_size(), environment.rank(), environment.store_home().name) == (4, 3, "runs")
    snapshot = tmp_path / "copy.sqlite"
    snapshot.write_bytes(b"")
    monkeypatch.setenv("CLBOUNDS_SPOOL_SNAPSHOT", str(snapshot))
    assert environment.snapshot_path() == snapshot
    (tmp_path / "link.sqlite").symlink_to(snapshot)
    monkeypatch.setenv("CLBOUNDS_SPOOL_SNAPSHOT", str(tmp_path / "link.sqlite"))
    with pytest.raises(environment.ConfigError, match="not a regular file"):
        environment.snapshot_path()
    monkeypatch.setenv("CLBOUNDS_SPOOL_SNAPSHOT", str(tmp_path / "gone.sqlite"))
    assert environment.snapshot_path() is None  # removed meanwhile: the job reads the shared database


@pytest.mark.parametrize("content", ["fifo", "link", '["a list"]', '{"../x": "1"}', '{"ab12": 5}', "not json", "big"])
def test_a_hostile_jobs_registry_reattaches_nothing_and_never_blocks(tmp_path, content):
    """<out>/jobs.json of a SLURM grid: a FIFO, a symlink, the wrong shape or an oversized file
    is reported once and re-attaches no job (its runs are submitted again); it never blocks."""
    import os

    from clbounds.experiments.pipeline.cluster import JOBS_FILE_MAX_BYTES, SubmititExecutor

    lines: list[str] = []
    executor = SubmititExecutor(tmp_path, "submitit-local", log=lines.append)
    if content == "fifo":
        os.mkfifo(executor.registry)
    elif content == "link":
        (tmp_path / "elsewhere.json").write_text('{"ab12": "1"}')
        executor.registry.symlink_to(tmp_path / "elsewhere.json")
    elif content == "big":
        executor.registry.write_text('{"ab12": "1"' + " " * JOBS_FILE_MAX_BYTES + "}")
    else:
        executor.registry.write_text(content)
    assert executor._recorded() == {} and executor._recorded() == {}
    assert len(lines) == 1 and "no job is re-attached" in lines[0]
    executor.registry.unlink()
    executor._record({"ab12cd34ef": "1234_0"})
    assert executor._recorded() == {"ab12cd34ef": "1234_0"}
