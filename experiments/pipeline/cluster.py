"""Grids on a SLURM cluster through submitit: each grid item one job of one job array.

``clbounds verify|reproduce --executor slurm`` hands every item that is not finished to
SLURM as one job, which trains, evaluates and measures its run (:func:`steps.run_pipeline`).
``--executor submitit-local`` runs the very same jobs as subprocesses of this machine,
through submitit's local executor: the code path the tests exercise without a cluster.

- **Settings** come from the config's ``slurm`` section (preset ``common`` overrides or
  ``slurm.key=value`` on the command line), validated like every other key. All items of a
  grid share them (one array).
- **The store.** A job writes into its run folder (experiments/store/spool.py, ``CLBOUNDS_SPOOL=1``),
  never the shared SQLite database; the driver imports each job's rows when it ends.
- **Preemption and time-outs.** submitit signals a job before its time limit (and SLURM on
  preemption); the job is checkpointed (:class:`GridJob` resubmits itself with the same
  arguments) and requeued, at most ``slurm.max_requeues`` times after a time-out. Training
  resumes from the last completed epoch's state in the run folder; finished steps are skipped.
- **Failures.** A job that fails marks its run failed; the other jobs go on.
- **Restarts.** ``<out>/jobs.json`` maps each run id to its job. A rerun of the driver imports
  what the jobs wrote, skips every run that is finished in the store, re-attaches to a
  recorded job that is still queued or running, and submits only the rest (a run whose job
  failed is submitted again).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, SlurmConfig
from ..store.db import Store
from ..store.files import read_regular_file
from .executors import Call

__all__ = ["DryRun", "GridJob", "SubmititExecutor", "sbatch_script"]

#: jobs.json: one short line per run; a grid of 100,000 runs stays far below the cap.
JOBS_FILE_MAX_BYTES = 16 * 2**20
MAX_RECORDED_JOBS = 100_000
_JOB_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
UNKNOWN_GIVE_UP_S = 1800.0  # a job sacct has not known for this long is taken as ended (its result() says why)
_ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}


def _submitit() -> Any:
    try:
        import submitit
    except ImportError as err:  # a runtime dependency; only a broken install lacks it
        raise ConfigError(f"--executor slurm needs submitit ({err}); `pip install submitit`") from None
    return submitit


class DryRun(Exception):
    """``--dry-run``: the sbatch script was written and nothing was submitted (args: its path, its text)."""


class GridJob:
    """One grid item as a job: train, evaluate and measure its run, writing into its run
    folder. Checkpointable: on a time-out or a preemption it is resubmitted with the same
    arguments, and training resumes from the run's last state."""

    def __init__(self, snapshot: str | None = None) -> None:
        self.snapshot = snapshot  # the driver's copy of the store's database, which the job starts from

    def __call__(self, cfg: Config, store_root: str, terms: Sequence[str] | None) -> tuple[str, dict[str, float]]:
        from ..store.spool import SNAPSHOT_ENV, SPOOL_ENV
        from .steps import run_pipeline

        os.environ[SPOOL_ENV] = "1"  # this job's store writes go to files in the run folder
        if self.snapshot:
            os.environ[SNAPSHOT_ENV] = self.snapshot
        return run_pipeline(cfg, store_root, terms, progress=False)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        return _submitit().helpers.DelayedSubmission(GridJob(self.snapshot), *args, **kwargs)


def slurm_parameters(slurm: SlurmConfig, name: str) -> dict[str, Any]:
    """submitit SlurmExecutor parameters from the config's ``slurm`` section."""
    params: dict[str, Any] = {"job_name": name, "gpus_per_node": slurm.gpus_per_node, "cpus_per_task": slurm.cpus_per_task, "mem": f"{slurm.mem_gb}GB",
                              "time": slurm.timeout_min, "array_parallelism": slurm.array_parallelism}
    if slurm.partition:
        params["partition"] = slurm.partition
    if slurm.setup.strip():
        params["setup"] = [c.strip() for c in slurm.setup.split(";") if c.strip()]
    extra = {}
    for token in slurm.sbatch.split():  # validated by config._check_slurm
        key, _, value = token[2:].partition("=")
        extra[key.replace("-", "_")] = value or True
    if extra:
        params["additional_parameters"] = extra
    return params


def sbatch_script(slurm: SlurmConfig, folder: Path, jobs: int, name: str = "clbounds") -> str:
    """The sbatch script of the job array that ``--executor slurm`` submits for ``jobs`` items
    (submitit's own template, the same text it writes before calling sbatch)."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = slurm_parameters(slurm, name)
    command = f"{shlex.quote(os.sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder / '%j'))}"
    return _make_sbatch_string(command=command, folder=str(folder / "%j"), map_count=jobs, **params)


class SubmititExecutor:
    """Submits grid items as one submitit job array and yields their results as they end
    (a remote :class:`executors.Executor`)."""

    remote = True

    def __init__(self, folder: Path, cluster: str = "slurm", name: str = "clbounds", log: Callable[[str], None] = print, dry_run: bool = False,
                 local_timeout_min: float | None = None, local_signal_delay_s: int | None = None) -> None:
        if cluster not in ("slurm", "submitit-local"):
            raise ValueError(f"cluster must be slurm or submitit-local, got {cluster!r}")
        self.folder, self.cluster, self.name, self.log, self.dry_run = Path(folder), cluster, name, log, dry_run
        self.local_timeout_min, self.local_signal_delay_s = local_timeout_min, local_signal_delay_s
        self.registry = self.folder / "jobs.json"
        self.snapshot = self.folder / "store.sqlite"  # the driver rewrites it after every import (experiments/store/spool.py)
        self._unknown_since: dict[str, float] = {}
        self._registry_warned = False  # a jobs.json that cannot be read is reported once

    def _executor(self, slurm: SlurmConfig) -> Any:
        submitit = _submitit()
        if self.cluster == "slurm":
            executor = submitit.SlurmExecutor(folder=self.folder / "%j", max_num_timeout=slurm.max_requeues)
            executor.update_parameters(**slurm_parameters(slurm, self.name))
        else:  # the same jobs as subprocesses here, all at once; partition, memory and sbatch options do not apply
            import torch

            executor = submitit.LocalExecutor(folder=self.folder / "%j", max_num_timeout=slurm.max_requeues)
            executor.update_parameters(timeout_min=self.local_timeout_min or slurm.timeout_min, signal_delay_s=self.local_signal_delay_s or 30,
                                       gpus_per_node=min(slurm.gpus_per_node, torch.cuda.device_count()))
        return executor

    # --- the registry of submitted jobs: a restarted driver re-attaches to them ------------
    def _recorded(self) -> dict[str, str]:
        """The recorded {run id: job id}; a registry that is not a regular file within its cap, or
        holds anything but such pairs, re-attaches nothing (said once): its runs are submitted again."""
        if not self.registry.exists() and not self.registry.is_symlink():
            return {}
        try:
            data = json.loads(read_regular_file(self.registry, JOBS_FILE_MAX_BYTES))
            if not isinstance(data, dict) or len(data) > MAX_RECORDED_JOBS:
                raise ValueError("not a mapping of at most 100,000 run ids to job ids")
            if not all(isinstance(k, str) and isinstance(v, str) and _JOB_KEY.fullmatch(k) and _JOB_KEY.fullmatch(v) for k, v in data.items()):
                raise ValueError("a run id or job id that is not 1-64 letters, digits, '_', '.' or '-'")
        except (OSError, ValueError) as err:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            if not self._registry_warned:
                self.log(f"  {self.registry} is not a jobs registry clbounds wrote ({' '.join(str(err).split())}); no job is re-attached")
                self._registry_warned = True
            return {}
        return data

    def _record(self, jobs: dict[str, str]) -> None:
        tmp = self.registry.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self._recorded(), **jobs}, indent=1))
        os.replace(tmp, self.registry)

    def _reattach(self, job_id: str) -> Any | None:
        """The recorded job if it is still queued or running. A job that ended is not re-attached:
        what it wrote was imported, and the run is submitted again unless that finished it
        (a failed run is retried; new eval or measure settings are measured)."""
        submitit = _submitit()
        job_class = submitit.SlurmJob if self.cluster == "slurm" else submitit.LocalJob
        job = job_class(folder=self.folder / "%j", job_id=job_id)
        if job.paths.result_pickle.exists():
            return None
        if self.cluster == "slurm":  # UNKNOWN: sacct may lag a fresh submission; as_completed gives up on it after a while
            return job if job.state.upper().split()[0] in _ACTIVE_SLURM_STATES | {"UNKNOWN"} else None
        return job if _local_job_alive(job_id) else None

    def run(self, store: Store, calls: Sequence[Call], progress: bool,
            on_step: Sequence[Callable[[str], None] | None]) -> Iterator[tuple[int, Callable[[], Any]]]:
        """The calls as one job array (one ``slurm`` section for all), from a fresh snapshot of
        the store; yields each index and its result getter as the job ends."""
        settings = {json.dumps(dataclasses.asdict(call[0].slurm), sort_keys=True) for call in calls}
        if len(settings) > 1:
            raise ConfigError(f"the runs of one grid are one job array and need the same slurm settings; these differ: {' | '.join(sorted(settings))}")
        slurm = calls[0][0].slurm if calls else SlurmConfig()
        if calls and not self.dry_run:
            store.write_snapshot(self.snapshot)  # the database the jobs start from
        jobs = self.submit_grid([(call[0].run_id(), tuple(call)) for call in calls], slurm)
        for k in self.as_completed(jobs):
            yield k, partial(job_result, jobs[k], self.cluster)

    def submit_grid(self, calls: list[tuple[str, tuple]], slurm: SlurmConfig) -> list[Any]:
        """(run id, GridJob arguments) per item → one job or re-attached job per item, with the
        grid's ``slurm`` settings. With ``dry_run``, writes the sbatch script and raises DryRun.
        The caller has written the store's snapshot (``self.snapshot``) for the jobs to read."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.dry_run and not calls:
            raise DryRun(None, "every run of the grid is finished in the store: nothing would be submitted")
        if self.dry_run:
            path = self.folder / "array.sbatch"
            text = sbatch_script(slurm, self.folder, len(calls), self.name)
            path.write_text(text)
            raise DryRun(path, text)
        if not calls:
            return []
        recorded = self._recorded()
        jobs: list[Any] = [None] * len(calls)
        for i, (run_id, _) in enumerate(calls):
            if run_id in recorded:
                jobs[i] = self._reattach(recorded[run_id])
        fresh = [i for i, job in enumerate(jobs) if job is None]
        if len(fresh) < len(calls):
            self.log(f"  re-attached to {len(calls) - len(fresh)} job(s) of an earlier driver ({self.registry})")
        if fresh:
            executor = self._executor(slurm)
            with executor.batch():
                for i in fresh:
                    jobs[i] = executor.submit(GridJob(str(self.snapshot)), *calls[i][1])
            self._record({calls[i][0]: str(jobs[i].job_id) for i in fresh})
            self.log(f"  submitted {len(fresh)} job(s) ({self.cluster}); logs in {self.folder}")
        return jobs

    def as_completed(self, jobs: list[Any], poll_s: float = 2.0, report_s: float = 60.0) -> Iterator[int]:
        """Indices of ``jobs`` as each one ends, with a summary of the states every ``report_s``."""
        pending, last = set(range(len(jobs))), time.monotonic()
        while pending:
            for i in sorted(pending):
                if self._finished(jobs[i]):
                    pending.discard(i)
                    yield i
            if pending and time.monotonic() - last >= report_s:
                states: dict[str, int] = {}
                for i in pending:
                    states[jobs[i].state] = states.get(jobs[i].state, 0) + 1
                self.log(f"  jobs: {len(jobs) - len(pending)}/{len(jobs)} ended; " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())))
                last = time.monotonic()
            if pending:
                time.sleep(poll_s)


    def _finished(self, job: Any) -> bool:
        """Whether a job has ended. submitit's done() is True for a re-attached local job that
        still runs (it has no process handle), so a local job is asked by its process id; a
        SLURM job that sacct does not know (or reports preempted and never requeues) for
        UNKNOWN_GIVE_UP_S counts as ended, so the driver cannot wait forever."""
        if job.paths.result_pickle.exists():
            return True
        if self.cluster == "submitit-local":
            process = getattr(job, "_process", None)  # submitted by this driver: submitit holds its process
            if process is not None:
                return process.poll() is not None
            return not _local_job_alive(str(job.job_id))  # re-attached: by its pid (long started, so exec'd)
        if job.done():
            return True
        state = job.state.upper().split()[0]
        if state in ("UNKNOWN", "PREEMPTED"):
            since = self._unknown_since.setdefault(str(job.job_id), time.monotonic())
            return time.monotonic() - since > UNKNOWN_GIVE_UP_S
        self._unknown_since.pop(str(job.job_id), None)
        return False


def job_result(job: Any, cluster: str) -> Any:
    """The job's result. A local job that ended without a result pickle (killed, out of memory)
    fails at once with its log's path; submitit would wait 15 s for a pickle that a network
    filesystem may show late, which only a SLURM job needs."""
    if cluster == "submitit-local" and not job.paths.result_pickle.exists():
        raise RuntimeError(f"job {job.job_id} ended without a result (killed, or out of memory); its log: {job.paths.stderr}")
    return job.result()


def _local_job_alive(job_id: str) -> bool:
    """Whether the controller process of a submitit local job (its id is the pid) still runs."""
    try:
        pid = int(job_id)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process: not ours, but alive
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():  # not Linux: trust the signal
        return True
    for attempt in range(2):  # a zombie (ended, not reaped) has an empty command line; a reused pid another one
        try:
            if b"submitit" in cmdline.read_bytes():
                return True
        except OSError:
            return False
        if attempt == 0:
            time.sleep(0.2)  # a process between fork and exec still shows its parent's command line
    return False


def finished_future(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future
