"""Grids through submitit (experiments/pipeline/cluster.py): the SLURM path with submitit's local
executor, which runs every job as a real subprocess; the sbatch script checked without a cluster."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from clbounds.experiments.cli import main
from clbounds.experiments.pipeline.cluster import SubmititExecutor, sbatch_script
from clbounds.experiments.config import ConfigError, SlurmConfig, config_from_dict, load_config
from clbounds.experiments.store.spool import pending_spool_files
from clbounds.experiments.store.db import Store
from clbounds.experiments.pipeline.grid import GridItem, run_grid

from conftest import CHEAP_MEASURE, tiny_raw, write_tiny_preset

TERMS = ["losses"]  # one cheap term group per job


def items(tmp_path, *runs: tuple[str, list[str]]) -> list[GridItem]:
    base = tmp_path / "base.yaml"
    raw = tiny_raw(optim__epochs=2)
    raw["measure"] = dict(CHEAP_MEASURE)
    base.write_text(yaml.safe_dump(raw))
    return [GridItem(label, load_config(str(base), overrides)) for label, overrides in runs]


def test_the_sbatch_script_names_partition_gpus_time_array_and_the_extra_parameters(tmp_path):
    slurm = config_from_dict({"slurm": {"partition": "gpu", "gpus_per_node": 2, "cpus_per_task": 16, "mem_gb": 64, "timeout_min": 90, "array_parallelism": 3,
                                        "sbatch": "--account=abc --exclusive", "setup": "module load cuda/12.1; source env/bin/activate"}}).slurm
    text = sbatch_script(slurm, tmp_path, jobs=10, name="verify-quick")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=16", "#SBATCH --mem=64GB", "#SBATCH --time=90",
                 "#SBATCH --array=0-9%3", "#SBATCH --account=abc", "#SBATCH --exclusive", "#SBATCH --job-name=verify-quick", "#SBATCH --signal=USR2@90",
                 "module load cuda/12.1\nsource env/bin/activate\n", "-m submitit.core._submit"):
        assert line in text, line
    assert "--partition" not in sbatch_script(SlurmConfig(), tmp_path, jobs=2)  # the cluster's default partition


def test_slurm_settings_are_validated_like_every_other_key():
    for bad, message in ((["slurm.partition=a;rm"], "not a partition name"), (["slurm.sbatch=--x=$(id)"], "not an sbatch option"),
                         (["slurm.timeout_min=0"], "out of range"), (["slurm.gpu_per_node=1"], "did you mean 'gpus_per_node'")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            load_config("quick-simclr-synthetic", bad)
    assert load_config("quick-simclr-synthetic", ["slurm.partition=gpu"]).run_id() == load_config("quick-simclr-synthetic", []).run_id()


def test_verify_dry_run_writes_the_script_and_submits_nothing(tmp_path, capsys):
    preset = write_tiny_preset(tmp_path, [{"label": "a", "overrides": []}, {"label": "b", "overrides": ["color_strength=1.0"]}])
    store = tmp_path / "store"
    assert main(["--store", str(store), "verify", "--preset", str(preset), "--executor", "slurm", "--dry-run", "slurm.partition=gpu"]) == 0
    out = capsys.readouterr().out
    assert "nothing submitted" in out and "#SBATCH --array=0-1%2" in out and "#SBATCH --partition=gpu" in out
    assert (store / "jobs" / "verify-tiny-preset" / "array.sbatch").is_file() and Store(store).runs() == []
    for argv, message in ((["--dry-run"], "add --executor slurm"), (["--executor", "slurm", "--workers", "2"], "--workers is for --executor local")):
        assert main(["--store", str(store), "verify", "--preset", str(preset), *argv]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_grid_runs_through_submitit_jobs_a_failed_job_fails_its_run_and_a_restarted_driver_reattaches(tmp_path):
    store = Store(tmp_path / "store")
    grid = items(tmp_path, ("a", []), ("b", ["color_strength=1.0"]), ("broken", ["data.name=cifar10", "data.root=/nonexistent"]))
    lines: list[str] = []
    executor = SubmititExecutor(tmp_path / "jobs", "submitit-local", log=lines.append)
    results = run_grid(grid, store, executor, terms=TERMS, log=lines.append)
    status = {r.label: r.status for r in results}
    assert status == {"a": "done", "b": "done", "broken": "failed"}  # the failed job did not stop the others
    broken = store.get_run(grid[2].config.run_id())
    assert broken.status == "failed" and "cifar" in broken.message.lower()
    for item in grid[:2]:  # every row of the jobs reached the shared store, through the spool
        names = {m["name"] for m in store.measurements(item.config.run_id())}
        assert {"train_loss", "knn_accuracy", "info_nce"} <= names
    assert not pending_spool_files(store.root)
    assert "submitted 3 job(s)" in "\n".join(lines)

    # A driver stopped right after submitting c. The next driver skips the finished runs,
    # re-attaches to c's job, which still runs, instead of submitting it twice, and submits d.
    more = items(tmp_path, ("c", ["optim.epochs=25"]), ("d", ["augment=ab"]))
    first = SubmititExecutor(tmp_path / "jobs", "submitit-local", log=lines.append)
    first.submit_grid([(more[0].config.run_id(), (more[0].config, str(store.root), TERMS))], more[0].config.slurm)
    lines.clear()
    results = run_grid([*grid[:2], *more], store, SubmititExecutor(tmp_path / "jobs", "submitit-local", log=lines.append), terms=TERMS, log=lines.append)
    log = "\n".join(lines)
    assert [r.status for r in results] == ["done"] * 4
    assert "re-attached to 1 job(s)" in log and "submitted 1 job(s)" in log, log  # c re-attached, d submitted, a and b skipped
    assert log.count("done (stored)") == 2
    assert store.get_run(more[0].config.run_id()).status == "done" and len(list((tmp_path / "jobs").glob("[0-9]*"))) == 5


def _signal_the_job_after_an_epoch(jobs: Path, state: Path, sig: int) -> None:
    """What SLURM does before a time limit or on preemption (``--signal=USR2@...``): signal the
    job's task process, here once it has checkpointed its first epoch."""
    import json
    import os

    from safetensors import safe_open

    t0 = time.time()
    while time.time() - t0 < 120:
        try:
            with safe_open(str(state), framework="pt") as f:
                if json.loads(f.metadata()["info"])["epoch"] >= 1:
                    break
        except Exception:  # noqa: BLE001 - not written yet, or being renamed into place
            pass
        time.sleep(0.01)
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"submitit.core._submit" in cmdline and (str(jobs) + "/").encode() in cmdline:
            os.kill(int(proc.name), sig)


@pytest.mark.slow
def test_a_signalled_job_is_requeued_and_a_killed_one_resubmitted_and_both_resume_from_their_last_epoch(tmp_path):
    import signal
    import threading

    from safetensors.torch import load_file

    (item,) = items(tmp_path, ("long", ["optim.epochs=20"]))
    reference = Store(tmp_path / "reference")
    assert run_grid([item], reference, SubmititExecutor(tmp_path / "jobs-reference", "submitit-local", log=lambda s: None), terms=TERMS, log=lambda s: None)[0].status == "done"

    store = Store(tmp_path / "store")
    state = store.run_dir(item.config.run_id()) / "state.safetensors"
    signaller = threading.Thread(target=_signal_the_job_after_an_epoch, args=(tmp_path / "jobs", state, signal.SIGUSR2))
    signaller.start()
    (result,) = run_grid([item], store, SubmititExecutor(tmp_path / "jobs", "submitit-local", log=lambda s: None), terms=TERMS, log=lambda s: None)
    signaller.join()
    assert result.status == "done", result.message
    logs = "".join(p.read_text() for p in (tmp_path / "jobs").rglob("*_log.*"))
    assert "Calling checkpoint method" in logs and "Requeued job" in logs  # checkpointed and requeued by submitit
    a = load_file(reference.run_dir(item.config.run_id()) / "encoder.safetensors")
    b = load_file(store.run_dir(item.config.run_id()) / "encoder.safetensors")
    assert all(a[k].equal(b[k]) for k in a)  # resumed from its last epoch: the weights of the uninterrupted job, bit for bit

    # A job killed outright (SIGKILL: a node lost) leaves no result: its run fails, and the next
    # driver resubmits it, and it resumes from the last epoch it checkpointed.
    killed = Store(tmp_path / "killed")
    state = killed.run_dir(item.config.run_id()) / "state.safetensors"
    killer = threading.Thread(target=_signal_the_job_after_an_epoch, args=(tmp_path / "jobs-killed", state, signal.SIGKILL))
    killer.start()
    (result,) = run_grid([item], killed, SubmititExecutor(tmp_path / "jobs-killed", "submitit-local", log=lambda s: None), terms=TERMS, log=lambda s: None)
    killer.join()
    assert result.status == "failed" and killed.get_run(item.config.run_id()).status == "failed"
    lines: list[str] = []
    (result,) = run_grid([item], killed, SubmititExecutor(tmp_path / "jobs-killed", "submitit-local", log=lines.append), terms=TERMS, log=lines.append)
    assert result.status == "done" and "submitted 1 job(s)" in "\n".join(lines)
    c = load_file(killed.run_dir(item.config.run_id()) / "encoder.safetensors")
    assert all(a[k].equal(c[k]) for k in a)
