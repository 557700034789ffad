import multiprocessing as mp

from clbounds.experiments.store.db import Store

CFG = {"name": "n", "method": {"name": "simclr"}, "data": {"name": "synthetic"}, "encoder": {"arch": "mlp"}}


def test_runs_round_trip_and_status(tmp_path):
    s = Store(tmp_path)
    s.upsert_run("r1", CFG)
    assert s.get_run("r1").status == "running"
    s.set_status("r1", "failed", "loss became non-finite at step 3")
    r = s.find_run("r")
    assert (r.status, r.message, r.method, r.config) == ("failed", "loss became non-finite at step 3", "simclr", CFG)
    assert s.get_run("nope") is None


def test_measurement_carries_protocol_and_same_protocol_replaces(tmp_path):
    s = Store(tmp_path)
    s.upsert_run("r1", CFG)
    s.add_measurement("r1", "knn_accuracy", 0.5, "knn k=200 t=0.1 offline final-epoch test")
    s.add_measurement("r1", "knn_accuracy", 0.6, "knn k=200 t=0.1 offline final-epoch test")
    s.add_measurement("r1", "knn_accuracy", 0.4, "knn k=200 t=0.1 offline random-init test")
    rows = s.measurements("r1")
    assert [(r["value"], r["protocol"].split()[-2]) for r in rows] == [(0.6, "final-epoch"), (0.4, "random-init")]
    assert all(isinstance(r["created"], float) and r["created"] > 1.6e9 for r in rows)  # unix time of the write


def _writer(root: str, worker: int, n: int) -> None:
    s = Store(root)
    for i in range(n):
        s.add_measurement(f"run{worker}", f"term{i}", float(i), "test")


def test_concurrent_writers_lose_no_row(tmp_path):
    Store(tmp_path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(Store(tmp_path).measurements()) == 4 * 40


def test_bound_checks_round_trip_and_replace(tmp_path):
    s = Store(tmp_path)
    check = {"theorem": "huang2023.theorem1", "bound": 0.3, "measured": 0.1, "holds": True, "tightness": 3.0, "assumptions_met": False,
             "details": {"failed": {"center_condition": {"lhs": 0.9, "rhs": 0.2}}}}
    s.add_bound_checks("r1", [check])
    s.add_bound_checks("r1", [{**check, "bound": 0.4, "tightness": 4.0}])
    (row,) = s.bound_checks("r1")
    assert row["bound"] == 0.4 and row["holds"] is True and row["assumptions_met"] is False
    assert row["details"]["failed"]["center_condition"]["rhs"] == 0.2
    s.add_bound_checks("r1", [{"theorem": "wen2020", "bound": None, "measured": None, "holds": None, "tightness": None, "assumptions_met": True}])
    assert [r["holds"] for r in s.bound_checks()] == [True, None]


def test_one_protocol_rule_for_the_checks_and_the_figures(tmp_path):
    """A term stored under several protocols: the bound checks and the figures read the same row."""
    import time

    from clbounds.experiments.pipeline.bounds_step import run_terms
    from clbounds.experiments.store.terms import pick
    from clbounds.figures.frames import protocol_of, wide

    s = Store(tmp_path)
    s.upsert_run("r", {"name": "x", "method": {"name": "simclr"}, "data": {"name": "synthetic"}, "encoder": {"arch": "mlp"}})
    for name, value, protocol in [("knn_accuracy", 0.9, "knn final-epoch"), ("knn_accuracy", 0.3, "knn random-init"),  # the baseline, written last
                                  ("sigma", 0.5, "M=4"), ("sigma", 0.6, "M=8 final-epoch"), ("sigma", 0.7, "M=16")]:
        s.add_measurement("r", name, value, protocol)
        time.sleep(0.01)
    terms, protocols, ambiguous = run_terms(s, "r")
    assert terms == {"knn_accuracy": 0.9, "sigma": 0.6} and sorted(ambiguous) == ["knn_accuracy", "sigma"]
    frame = wide(tmp_path, ["r"])
    assert float(frame["knn_accuracy"].iloc[0]) == 0.9 and float(frame["sigma"].iloc[0]) == 0.6
    assert protocol_of(tmp_path, "sigma") == protocols["sigma"] == "M=8 final-epoch"
    assert float(wide(tmp_path, ["r"], {"sigma": "M=16"})["sigma"].iloc[0]) == 0.7  # a figure that asks for a protocol gets it
    only_baseline = [{"protocol": "random-init", "created": 1.0, "value": 0.1}]
    assert pick(only_baseline)["value"] == 0.1  # the baseline when nothing else is stored
