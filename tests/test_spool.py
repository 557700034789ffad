"""A store that is safe on a cluster (experiments/store/spool.py): jobs write files into their run
folders, and the shared database imports them exactly once."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest

from clbounds.experiments.cli import main
from clbounds.experiments.store.spool import SpoolStore, import_spool, open_store, pending_spool_files
from clbounds.experiments.store.db import Store

CONFIG = {"name": "x", "method": {"name": "simclr"}, "data": {"name": "synthetic"}, "encoder": {"arch": "mlp"}}


def job(root: str, run_id: str, rows: int, in_child: bool = False) -> None:
    """What a job on another node does: open the store as a spool, write a run and its rows."""
    if in_child:  # a spawned process: the environment is its own, as in a SLURM job
        os.environ["CLBOUNDS_SPOOL"] = "1"
    store = open_store(root) if in_child else SpoolStore(root)
    assert isinstance(store, SpoolStore)
    store.upsert_run(run_id, CONFIG)
    for i in range(rows):
        store.add_measurements(run_id, [(f"term_{i}", float(i), "protocol p")])
    store.add_bound_checks(run_id, [{"theorem": "t", "bound": np.float32(1.5), "measured": 0.5, "holds": np.bool_(True), "details": {"x": np.float64(2.0)}}])
    store.set_status(run_id, "done")


def test_rows_of_several_processes_are_imported_exactly_once(tmp_path):
    root = tmp_path / "store"
    shared = Store(root)
    shared.upsert_run("before", CONFIG, status="done")  # a row of the shared store the jobs can read
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=job, args=(str(root), f"run{k}", 20, True)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert not list(root.glob("*/spool/.*.tmp"))  # every file was renamed into place, complete
    assert {r.id for r in shared.runs()} == {"before"}  # nothing reached the shared database yet
    assert len(pending_spool_files(root)) == 3 * 23
    assert import_spool(shared) == 69
    assert import_spool(shared) == 0 and not pending_spool_files(root)  # importing twice adds nothing
    runs = {r.id: r for r in shared.runs()}
    assert set(runs) == {"before", "run0", "run1", "run2"} and all(runs[f"run{k}"].status == "done" for k in range(3))
    for k in range(3):
        assert sorted(m["value"] for m in shared.measurements(f"run{k}")) == [float(i) for i in range(20)]
        (check,) = shared.bound_checks(f"run{k}")
        assert check["bound"] == 1.5 and check["holds"] is True and check["details"] == {"x": 2.0}


def test_a_file_imported_but_not_deleted_is_skipped_and_a_partial_or_foreign_file_is_left_alone(tmp_path, capsys):
    root = tmp_path / "store"
    job(str(root), "run0", 2)
    files = pending_spool_files(root)
    copies = {p: p.read_bytes() for p in files}
    shared = Store(root)
    assert import_spool(shared, delete=False) == len(files)  # a crash after the commit, before the deletes
    shared.set_status("run0", "failed", "changed after the import")
    assert import_spool(shared) == 0  # the files are recorded: replaying them would not revert the status
    assert shared.get_run("run0").status == "failed" and not pending_spool_files(root)
    for p, data in copies.items():  # the same files again, as a second copy of the folder might bring them
        p.write_bytes(data)
    assert import_spool(shared) == 0
    folder = root / "run0" / "spool"
    (folder / ".00000000000000000009-h-1-000001.json.tmp").write_text('{"format": "clbounds-spo')  # being written
    (folder / "00000000000000000010-h-1-000002.json").write_text('{"format": "clbounds-spool-1", "run": "run0", "op": "DROP TABLE runs", "args": {}, "at": 1}')
    (folder / "00000000000000000011-h-1-000003.json").write_text(json.dumps({"format": "clbounds-spool-1", "run": "other", "op": "set_status",
                                                                            "args": {"status": "done", "message": ""}, "at": 1}))
    (folder / "00000000000000000012-h-1-000004.json").write_text('{"format": "clbounds-spool-1", "run": "run0", "op": "set_status", '
                                                                 '"args": {"status": "done", "message": ""}, "at": 1' + "0" * 400 + "}")  # float() overflows
    (folder / "00000000000000000013-h-1-000005.json").write_text("[" * 100_000 + "]" * 100_000)  # past the parser's recursion limit
    assert import_spool(shared, log=lambda m: print(m)) == 0
    out = capsys.readouterr().out
    assert "unknown operation 'DROP TABLE runs'" in out and "names run 'other'" in out and "OverflowError" in out and "RecursionError" in out
    assert main(["--store", str(root), "runs"]) == 0  # the files stay, reported, and no command is stopped by them
    assert len(pending_spool_files(root)) == 4 and (folder / ".00000000000000000009-h-1-000001.json.tmp").exists()
    assert {r.id for r in shared.runs()} == {"run0"} and shared.get_run("run0").status == "failed"


def test_a_job_reads_the_shared_store_and_its_own_earlier_writes(tmp_path):
    root = tmp_path / "store"
    Store(root).upsert_run("before", CONFIG, status="done")
    first = SpoolStore(root, local_dir=tmp_path / "node1")
    first.upsert_run("r", CONFIG)
    first.add_measurements("r", [("a", 1.0, "p")])
    assert first.get_run("before").status == "done" and first.measurements("r")[0]["value"] == 1.0
    requeued = SpoolStore(root, local_dir=tmp_path / "node2")  # the same job on another node, nothing imported yet
    assert requeued.get_run("r").status == "running" and [m["name"] for m in requeued.measurements("r")] == ["a"]
    assert Store(root).get_run("r") is None  # the shared database is untouched until an import


def test_any_clbounds_command_imports_what_jobs_left(tmp_path, capsys):
    root = tmp_path / "store"
    job(str(root), "run0", 3)
    assert main(["--store", str(root), "runs"]) == 0
    assert "run0" in capsys.readouterr().out and not pending_spool_files(Path(root))


def test_a_training_job_in_spool_mode_lands_in_the_shared_store_after_the_import(tmp_path):
    import subprocess
    import sys

    from conftest import TINY_ARGS

    args = ["train", "quick-simclr-synthetic", *TINY_ARGS, "data.n_train=128", "data.n_test=64", "optim.epochs=2", "optim.batch_size=32", "--quiet"]
    env = {**os.environ, "CLBOUNDS_SPOOL": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "clbounds.experiments.cli", "--store", str(tmp_path / "spooled"), *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    spooled = Store(tmp_path / "spooled")
    assert spooled.runs() == [] and pending_spool_files(spooled.root)
    assert main(["--store", str(tmp_path / "direct"), *args]) == 0
    assert import_spool(spooled) > 0
    (a,), (b,) = Store(tmp_path / "direct").runs(), spooled.runs()
    assert a.id == b.id and b.status == "done" and (b.path / "encoder.safetensors").is_file()
    names = lambda s, r: sorted((m["name"], m["protocol"]) for m in s.measurements(r) if m["name"] != "train_wall_s")  # noqa: E731
    assert names(spooled, b.id) == names(Store(tmp_path / "direct"), a.id)
