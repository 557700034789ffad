import pickle

import pytest
import torch
from torch import nn

from clbounds.experiments.models.checkpoint import CheckpointError, load_training_state, load_weights, save_training_state, save_weights


def test_weights_and_optimizer_state_round_trip_bitwise(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(8, 4)).sum().backward()
    opt.step()
    save_weights(model, tmp_path / "w.safetensors")
    save_training_state(model, opt, tmp_path / "s.safetensors", {"epoch": 7})

    torch.manual_seed(1)
    model2 = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.5, momentum=0.9)
    assert load_training_state(model2, opt2, tmp_path / "s.safetensors") == {"epoch": 7}
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k
    model3 = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    load_weights(model3, tmp_path / "w.safetensors")
    for (k, a), b in zip(model.state_dict().items(), model3.state_dict().values()):
        assert torch.equal(a, b), k
    assert opt2.param_groups[0]["lr"] == 0.1
    for p, p2 in zip(model.parameters(), model2.parameters()):
        assert torch.equal(opt.state[p]["momentum_buffer"], opt2.state[p2]["momentum_buffer"])


def test_adam_state_round_trip(tmp_path):
    model = nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    save_training_state(model, opt, tmp_path / "s.safetensors", {"epoch": 1})
    model2 = nn.Linear(3, 1)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.3)
    load_training_state(model2, opt2, tmp_path / "s.safetensors")
    w, w2 = model.weight, model2.weight
    assert torch.equal(w, w2)
    assert torch.equal(opt.state[w]["exp_avg_sq"], opt2.state[w2]["exp_avg_sq"])
    assert float(opt.state[w]["step"]) == float(opt2.state[w2]["step"])


def test_architecture_mismatch_is_a_clear_error(tmp_path):
    save_weights(nn.Linear(4, 3), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="does not match this architecture: .*shape mismatch"):
        load_weights(nn.Linear(5, 3), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="does not match this architecture: missing"):
        load_weights(nn.Sequential(nn.Linear(4, 3)), tmp_path / "w.safetensors")


def test_corrupted_and_missing_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(nn.Linear(4, 3), path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="corrupted or not a safetensors file"):
        load_weights(nn.Linear(4, 3), path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(nn.Linear(4, 3), tmp_path / "none.safetensors")


class _Payload:
    def __reduce__(self):
        import os
        return (os.system, (f"touch {_Payload.marker}",))


def test_a_pickled_checkpoint_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    _Payload.marker = marker
    path = tmp_path / "encoder.safetensors"
    path.write_bytes(pickle.dumps({"weight": _Payload()}))
    torch.save({"weight": _Payload()}, tmp_path / "torch.pt")
    with pytest.raises(CheckpointError):
        load_weights(nn.Linear(4, 3), path)
    with pytest.raises(CheckpointError):
        load_weights(nn.Linear(4, 3), tmp_path / "torch.pt")
    assert not marker.exists()


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    model = nn.Linear(4, 3)
    save_weights(model, path)
    before = path.read_bytes()

    import clbounds.experiments.models.checkpoint as ck

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_weights(nn.Linear(4, 3), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left behind
