"""The settings a run's stored results were computed with: ``<run>/measured_with.json``.

The run id leaves the eval and measure settings out, so one trained run may be evaluated and
measured under several; this file says which settings each stored step (``eval``) and term
group (``measure_groups``) came from, so a grid redoes exactly the steps whose settings differ.
"""

from __future__ import annotations

import json
from typing import Any

from .db import Store
from .files import read_regular_file

#: measured_with.json holds a few settings per step: a larger one is not ours.
SETTINGS_MAX_BYTES = 1 << 20


def measured_with(store: Store, run_id: str) -> dict[str, Any]:
    """The eval and measure settings a run's stored results were computed with (``{}``: unknown)."""
    path = store.run_dir(run_id) / "measured_with.json"
    try:
        done = json.loads(read_regular_file(path, SETTINGS_MAX_BYTES))
    except (OSError, ValueError):  # missing, not a regular file, too large, not JSON: unknown, so redone
        return {}
    return done if isinstance(done, dict) else {}


def record_settings(store: Store, run_id: str, section: str, settings: dict[str, Any]) -> None:
    """Records ``settings`` under ``section`` (``eval``, ``measure_groups``; ``measure`` in stores
    written before groups were recorded one by one, which ``measure_groups`` replaces)."""
    path = store.run_dir(run_id) / "measured_with.json"
    done = measured_with(store, run_id) | {section: settings}
    if section == "measure_groups":  # folded into the per-group record
        done.pop("measure", None)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(done, indent=2, sort_keys=True))
    tmp.replace(path)  # atomic: an interrupted write leaves the previous file


def record_progress(store: Store, run_id: str, section: str, key: str, settings: dict[str, Any]) -> None:
    """Records that ``key`` (a term group, or ``<control>/<group>``) of ``section`` (``measure_own``,
    ``measure_controls``) is stored under ``settings``: a measure that is stopped resumes after it."""
    done = measured_with(store, run_id).get(section, {})
    record_settings(store, run_id, section, (done if isinstance(done, dict) else {}) | {key: settings})


def progress(store: Store, run_id: str, section: str, settings: dict[str, Any]) -> set[str]:
    """The keys of ``section`` stored under ``settings``."""
    done = measured_with(store, run_id).get(section, {})
    return {k for k, s in done.items() if s == settings} if isinstance(done, dict) else set()
