"""The paper preset's path end to end at a small size: CIFAR-10 files in the official format
(written here), a ResNet-18, one epoch, then every default term group and every bound. Not
timed: it exists so that the path `verify --preset paper` takes on a GPU cannot silently break."""

from __future__ import annotations

import pytest

from clbounds.experiments.measurement.registry import default_groups
from clbounds.experiments.store.db import Store
from clbounds.experiments.pipeline.steps import measured_groups, run_pipeline
from clbounds.experiments.pipeline.verify import grid_items, load_preset

from conftest import CHEAP_MEASURE
from test_data_readers import write_cifar10

SMALL = ["device=cpu", "optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=32", "encoder.width=0.25", "encoder.proj_hidden=64",
         "encoder.proj_dim=32", "eval.knn_k=10", "eval.linear_steps=10", *(f"measure.{k}={v}" for k, v in CHEAP_MEASURE.items()),
         "measure.center_views=1", "measure.pac_bayes_units=4", "measure.sigma_per_class=2"]


@pytest.mark.slow
def test_the_paper_preset_measures_every_term_group_on_generated_cifar_files(tmp_path):
    root = tmp_path / "data"
    write_cifar10(root, {f"data_batch_{i}": 40 for i in range(1, 6)} | {"test_batch": 60})
    item = grid_items(load_preset("paper"), [f"data.root={root}", *SMALL])[0]
    cfg = item.config
    assert (cfg.data.name, cfg.encoder.arch) == ("cifar10", "resnet18")
    store = Store(tmp_path / "store")
    run_id, _ = run_pipeline(cfg, str(store.root), None, progress=False)
    record = store.get_run(run_id)
    assert record.status == "done"
    assert set(default_groups(cfg)) <= measured_groups(store, run_id, cfg.to_dict()["measure"])  # every group ran, none was skipped
    names = {r["name"] for r in store.measurements(run_id)}
    # one row of every group; lipschitz_upper of the ResNet is bounded block by block (theory.geometry.lipschitz_upper)
    for expected in ("train_loss", "knn_accuracy", "linear_accuracy", "info_nce", "alignment", "uniformity", "sigma", "lipschitz_lower",
                     "lipschitz_upper", "lipschitz_upper_projector", "sharpness", "hessian_lambda_max", "shift_mmd2", "robust_accuracy", "l2_robust_accuracy",
                     "weight_movement", "mi_infonce_bound", "cacr_weight_distance_corr", "random_init/info_nce"):
        assert expected in names, (expected, " ".join(sorted(names)))
    checks = store.bound_checks(run_id)
    assert len(checks) >= 5 and all(c["bound"] is None or c["bound"] == c["bound"] for c in checks)  # evaluated, no NaN bound
