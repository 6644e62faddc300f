"""The shared training loop: learns a separable toy set, checkpoints round-trip, a killed run resumes exactly."""
import json
import os

import numpy as np
import pytest
import torch

from training.loop import TensorPairs, TrainConfig, load_state, predict_logits, save_state, train_model
from training.metrics import classification_metrics
from training.models import mlp


def toy_pairs(n, seed, n_features=47):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(np.int64)  # a natural-ish ratio: 1 positive per 9 negatives
    X = rng.normal(size=(n, n_features)) * 5 + 50
    X[:, 3] += np.where(y == 1, -15.0, 15.0)          # one informative feature, on a raw (unscaled) scale
    return TensorPairs(y, {"features": torch.as_tensor(X, dtype=torch.float32)})


def build_model(train):
    torch.manual_seed(0)
    return mlp.build(mlp.Config(hidden=(16,), dropout=0.1), mlp.fit_stats(train))


def test_learns_a_separable_toy_set(tmp_path):
    train, val = toy_pairs(2000, 0), toy_pairs(500, 1)
    model = build_model(train)
    result = train_model(model, train, val, TrainConfig(epochs=8, batch_size=128, lr=5e-3, seed=1), tmp_path,
                         progress=False)
    m = classification_metrics(val.labels, predict_logits(model, val))
    assert m["roc_auc"] > 0.99 and m["average_precision"] > 0.95
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history) == result["epochs_run"] and {"train_loss", "val_roc_auc", "val_average_precision"} <= set(history[0])
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()


def test_checkpoint_round_trip_uses_weights_only(tmp_path):
    train = toy_pairs(300, 2)
    model = build_model(train)
    save_state(tmp_path / "w.pt", model.state_dict())
    other = build_model(train)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    other.load_state_dict(load_state(tmp_path / "w.pt"))
    np.testing.assert_array_equal(predict_logits(model, train), predict_logits(other, train))


class Crash(RuntimeError):
    pass


def test_killed_run_resumes_to_the_same_result(tmp_path):
    train, val = toy_pairs(1200, 3), toy_pairs(300, 4)
    cfg = TrainConfig(epochs=5, batch_size=100, lr=3e-3, seed=7, patience=10)

    full = build_model(train)
    train_model(full, train, val, cfg, tmp_path / "full", progress=False)

    crashing = build_model(train)
    original_forward = crashing.forward
    calls = {"n": 0}

    def forward_that_dies_mid_epoch(**inputs):
        calls["n"] += 1
        if calls["n"] == 30:  # batches per epoch = 12 (+1 validation pass), so this is inside epoch 3
            raise Crash("simulated kill")
        return original_forward(**inputs)

    crashing.forward = forward_that_dies_mid_epoch
    with pytest.raises(Crash):
        train_model(crashing, train, val, cfg, tmp_path / "resumed", progress=False)
    partial = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert 0 < len(partial) < cfg.epochs

    resumed = build_model(train)  # a new process would start from fresh weights and load last.pt
    train_model(resumed, train, val, cfg, tmp_path / "resumed", progress=False)
    np.testing.assert_allclose(predict_logits(resumed, val), predict_logits(full, val), rtol=0, atol=1e-6)
    h_full = json.loads((tmp_path / "full" / "history.json").read_text())
    h_res = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [round(h["train_loss"], 6) for h in h_full] == [round(h["train_loss"], 6) for h in h_res]


def test_training_split_needs_both_classes(tmp_path):
    data = toy_pairs(100, 5)
    data.labels[:] = 0
    with pytest.raises(ValueError, match="needs both classes"):
        train_model(build_model(data), data, data, TrainConfig(epochs=1), tmp_path, progress=False)


def test_a_run_with_another_configuration_does_not_resume(tmp_path):
    train, val = toy_pairs(400, 6), toy_pairs(200, 7)
    train_model(build_model(train), train, val, TrainConfig(epochs=2, seed=1), tmp_path, progress=False)
    result = train_model(build_model(train), train, val, TrainConfig(epochs=2, seed=1, lr=1e-2), tmp_path,
                         progress=False)
    assert result["epochs_run"] == 2, "a changed config starts over instead of resuming"
    again = train_model(build_model(train), train, val, TrainConfig(epochs=3, seed=1, lr=1e-2), tmp_path,
                        progress=False, fingerprint="other model")
    assert again["epochs_run"] == 3
