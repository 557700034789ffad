import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from clbounds.experiments.measurement.probes import extract_features, knn_predict, linear_probe, nearest_center_accuracy


def _blobs(n_per_class: int, k: int, d: int, spread: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g, dtype=torch.float64) * 3
    y = torch.arange(k).repeat_interleave(n_per_class)
    x = centers[y] + spread * torch.randn(len(y), d, generator=g, dtype=torch.float64)
    return x, y


def test_knn_matches_a_brute_force_loop():
    xtr, ytr = _blobs(20, 3, 5, 2.0, 0)
    xte, _ = _blobs(7, 3, 5, 2.0, 1)
    k, t = 9, 0.1
    pred = knn_predict(xtr, ytr, xte, num_classes=3, k=k, t=t, chunk_size=4)
    for i, q in enumerate(xte):
        sims = [float(q @ p / (q.norm() * p.norm())) for p in xtr]
        top = sorted(range(len(sims)), key=lambda j: -sims[j])[:k]
        votes = [0.0] * 3
        for j in top:
            votes[int(ytr[j])] += np.exp(sims[j] / t)
        assert int(pred[i]) == int(np.argmax(votes))


def test_uniform_knn_agrees_with_scikit_learn_cosine_brute_force():
    xtr, ytr = _blobs(50, 4, 8, 3.0, 2)
    xte, _ = _blobs(25, 4, 8, 3.0, 3)
    ours = knn_predict(xtr, ytr, xte, num_classes=4, k=20, weighted=False)
    ref = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute").fit(xtr.numpy(), ytr.numpy()).predict(xte.numpy())
    # sklearn breaks vote ties toward the smaller label, as argmax does
    assert (ours.numpy() == ref).mean() == 1.0


def test_knn_with_k_larger_than_train_set_uses_all_points():
    xtr, ytr = _blobs(3, 2, 4, 0.1, 4)
    pred = knn_predict(xtr, ytr, xtr, num_classes=2, k=200)
    assert (pred == ytr).all()


def test_linear_probe_agrees_with_scikit_learn_logistic_regression():
    xtr, ytr = _blobs(60, 3, 6, 4.0, 5)
    xte, yte = _blobs(60, 3, 6, 4.0, 6)
    wd = 1e-2
    ours = linear_probe(xtr.float(), ytr, xte.float(), yte, num_classes=3, steps=500, weight_decay=wd)
    mean, std = xtr.mean(0), xtr.std(0)
    ref = LogisticRegression(C=1.0 / (len(ytr) * wd), max_iter=5000, tol=1e-10).fit(((xtr - mean) / std).numpy(), ytr.numpy())
    ref_acc = (ref.predict(((xte - mean) / std).numpy()) == yte.numpy()).mean()
    assert abs(ours["accuracy"] - ref_acc) <= 1 / len(yte) + 1e-9
    probs = ref.predict_proba(((xte - mean) / std).numpy())
    ref_ce = -np.log(probs[np.arange(len(yte)), yte.numpy()]).mean()
    assert ours["cross_entropy"] == pytest.approx(ref_ce, rel=2e-2)


def test_nearest_center_on_separated_classes_is_perfect():
    xtr, ytr = _blobs(10, 4, 6, 0.05, 7)
    assert nearest_center_accuracy(xtr, ytr, xtr, ytr, 4) == 1.0


def test_extract_features_restores_training_mode_and_handles_uint8():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3), torch.nn.BatchNorm1d(3))
    net.train()
    x = torch.randint(0, 256, (10, 3, 2, 2), dtype=torch.uint8)
    f = extract_features(net, x, batch_size=3)
    assert net.training and f.shape == (10, 3)
    net.eval()
    assert torch.allclose(f, net(x.float() / 255))
