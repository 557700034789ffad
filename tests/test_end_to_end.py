"""SimCLR must beat the same architecture at random initialisation (issue 2's bar).

Both configs are the bundled quick configs, shrunk to train in about 15-25 s on 2 cores.
The protocol is the offline cosine-weighted kNN with k=20, t=0.1 on the test split.
"""

import pytest

from clbounds.experiments.config import load_config
from clbounds.experiments.measurement.accuracy import evaluate
from clbounds.experiments.training.loop import train

CASES = {
    "synthetic": ("quick-simclr-synthetic", ["data.image_size=16", "data.n_train=1000", "optim.epochs=20", "eval.knn_k=20", "device=cpu"]),
    "digits": ("quick-simclr-digits", ["eval.knn_k=20", "device=cpu"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", CASES)
def test_simclr_cuts_knn_error_by_40_percent_over_random_init(store, dataset):
    name, overrides = CASES[dataset]
    record = train(load_config(name, overrides), store, progress=False)
    trained = {n: v for n, v, _ in evaluate(record, store)}
    random = {n: v for n, v, _ in evaluate(record, store, random_init=True)}
    error, baseline = 1 - trained["knn_accuracy"], 1 - random["knn_accuracy"]
    assert error <= 0.6 * baseline, f"kNN error {error:.3f} vs random-init {baseline:.3f}"
    assert trained["linear_accuracy"] > random["linear_accuracy"]
