"""The sequence models (Siamese BiLSTM, TCN, Transformer): data, masking, training, checkpoints, ONNX parity."""
from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
import torch

from runtime.fragment import Fragment
from runtime.windows import HEAD, TAIL, fragment_windows
from training.loop import TrainConfig, load_state, predict_logits, save_state, train_model
from training.metrics import classification_metrics
from training.models import SEQUENCE_KINDS, model_module
from training.models.sequence import contrastive_loss, masked_max, masked_mean, window_stats
from training.sequence_data import sequence_pairs

T0 = 1_623_877_175.0
# Small versions of each architecture, so that a training run takes a couple of seconds.
SMALL = {
    "siamese": {"hidden": 16},
    "tcn": {"channels": (8, 16, 16)},
    "transformer": {"d_model": 16, "heads": 2, "feedforward": 32, "layers": 1},
}
ONNX_TOLERANCE = 1e-4


def _fragment_doc(fid: str, n: int, speed: float, direction: int, rng: np.random.Generator,
                  fields: bool = False) -> dict:
    """A 25 Hz fragment moving at `speed` ft/s with tracker-like noise."""
    t = T0 + rng.uniform(0, 50) + 0.04 * np.arange(n)
    doc = {"_id": fid, "timestamp": t.tolist(), "direction": direction,
           "x_position": (rng.uniform(0, 1500) + direction * speed * (t - t[0]) + rng.normal(0, 0.05, n)).tolist(),
           "y_position": (rng.uniform(0, 48) + rng.normal(0, 0.3, n)).tolist()}
    if fields:
        doc.update(velocity=np.abs(speed + rng.normal(0, 1, n)).tolist(), length=rng.uniform(12, 40, n).tolist(),
                   width=rng.uniform(5, 9), height=rng.uniform(4, 12), detection_confidence=rng.uniform(0.2, 1, n).tolist())
    return doc


def _toy_pairs(n_pairs: int, seed: int, L: int):
    """A separable toy set: a pair is positive iff both fragments move at (nearly) the same speed.

    The pair features are noise, so a model can only succeed through its encoder.
    """
    rng = np.random.default_rng(seed)
    docs, a, b, labels = [], [], [], []
    for p in range(n_pairs):
        label = p % 2
        va = rng.uniform(20, 80)
        vb = va + rng.normal(0, 1) if label else va + rng.choice([-1, 1]) * rng.uniform(15, 40)
        for speed, role in ((va, "a"), (vb, "b")):
            docs.append(_fragment_doc(f"{seed}-{p}-{role}", int(rng.integers(3, 2 * L)), abs(speed),
                                      int(rng.choice([-1, 1])), rng))
        a.append(len(docs) - 2)
        b.append(len(docs) - 1)
        labels.append(label)
    return sequence_pairs(docs, np.array(a), np.array(b), np.array(labels), rng.normal(size=(n_pairs, 47)), L=L)


def _windows(lengths, L=64, seed=0, fields=True):
    """Realistic windows (B, L, C) and masks of fragments with `lengths` samples (tail windows)."""
    rng = np.random.default_rng(seed)
    out = [fragment_windows(Fragment.from_document(
        _fragment_doc(f"w{i}", n, rng.uniform(5, 90), int(rng.choice([-1, 1])), rng, fields=fields)), L)
        for i, n in enumerate(lengths)]
    windows = np.stack([w[TAIL] for w, _ in out])
    masks = np.stack([m[TAIL] for _, m in out])
    return torch.from_numpy(windows), torch.from_numpy(masks)


def _realistic_stats(seed=0) -> dict:
    windows, masks = _windows([5, 30, 64, 100, 200, 12], seed=seed)
    rng = np.random.default_rng(seed)
    features = rng.normal(0, 1, (50, 47)) * rng.uniform(0.1, 100, 47) + rng.normal(0, 10, 47)
    stats = window_stats(windows.numpy(), masks.numpy())
    stats.update({"feature_mean": features.mean(0).tolist(), "feature_scale": features.std(0).tolist()})
    return stats


def _default_model(kind: str, seed: int = 0):
    module = model_module(kind)
    torch.manual_seed(seed)
    return module.build(module.Config(), _realistic_stats(seed)).eval()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Small tensors on two shared cores: extra intra-op threads only wait on each other (an LSTM
    batch runs several times slower with two threads under load)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def toy():
    return _toy_pairs(320, seed=1, L=32), _toy_pairs(160, seed=2, L=32)


@pytest.fixture(scope="module", params=SEQUENCE_KINDS)
def trained(request, toy, tmp_path_factory):
    """One short training run per kind, shared by the learning and checkpoint tests."""
    kind = request.param
    module = model_module(kind)
    train, val = toy
    stats = module.fit_stats(train)
    config = module.Config(head_hidden=(32, 16), window_length=32, **SMALL[kind])
    torch.manual_seed(0)
    model = module.build(config, stats)
    run_dir = tmp_path_factory.mktemp(f"run-{kind}")
    cfg = TrainConfig(epochs=5, batch_size=32, lr=5e-3, patience=5, seed=0)
    result = train_model(model, train, val, cfg, run_dir, progress=False)
    return {"kind": kind, "module": module, "model": model, "config": config, "stats": stats, "val": val,
            "run_dir": run_dir, "result": result}


# ---- data --------------------------------------------------------------------------------------

def test_sequence_pairs_store_windows_once_per_fragment_and_gather_by_role():
    rng = np.random.default_rng(0)
    docs = [_fragment_doc(f"f{i}", n, 50.0, 1, rng, fields=i % 2 == 0) for i, n in enumerate([3, 80, 20, 64])]
    a, b = np.array([0, 1, 2, 0]), np.array([1, 3, 3, 2])
    features = rng.normal(size=(4, 47))
    pairs = sequence_pairs(docs, a, b, np.array([1, 0, 1, 0]), features, L=16)
    assert pairs.gathered["tail"][0].shape == (4, 16, 8)  # one row per fragment, not per pair
    batch = pairs.batch(np.arange(4))
    assert set(batch) == {"tail", "tail_mask", "head", "head_mask", "features"}
    assert batch["features"].dtype == torch.float32
    np.testing.assert_allclose(batch["features"].numpy(), features.astype(np.float32))
    for i in range(4):
        wa, ma = fragment_windows(Fragment.from_document(docs[a[i]]), 16)
        wb, mb = fragment_windows(Fragment.from_document(docs[b[i]]), 16)
        np.testing.assert_array_equal(batch["tail"][i].numpy(), wa[TAIL])
        np.testing.assert_array_equal(batch["tail_mask"][i].numpy(), ma[TAIL])
        np.testing.assert_array_equal(batch["head"][i].numpy(), wb[HEAD])
        np.testing.assert_array_equal(batch["head_mask"][i].numpy(), mb[HEAD])
    with pytest.raises(ValueError, match="out of range"):
        sequence_pairs(docs, np.array([0, 4]), np.array([1, 2]), np.array([0, 1]), features[:2])
    with pytest.raises(ValueError, match="one row per pair"):
        sequence_pairs(docs, a, b, np.array([0, 1]), features)


def test_fit_stats_use_valid_samples_of_the_windows_the_pairs_use():
    rng = np.random.default_rng(3)
    docs = [_fragment_doc(f"f{i}", n, 30.0 + 10 * i, 1, rng) for i, n in enumerate([4, 40, 9, 70, 5])]
    a, b = np.array([0, 0, 2]), np.array([2, 3, 3])  # fragment 1 and 4 are unused; 0 is used twice
    pairs = sequence_pairs(docs, a, b, np.array([1, 0, 1]), rng.normal(size=(3, 47)), L=32)
    stats = model_module("tcn").fit_stats(pairs)
    used = [fragment_windows(Fragment.from_document(docs[i]), 32) for i in (0, 2)]
    used += [fragment_windows(Fragment.from_document(docs[i]), 32) for i in (2, 3)]
    roles = [TAIL, TAIL, HEAD, HEAD]
    samples = np.concatenate([w[r][m[r] > 0] for (w, m), r in zip(used, roles)]).astype(np.float64)
    np.testing.assert_allclose(stats["channel_mean"], samples.mean(0), rtol=1e-6, atol=1e-9)
    expected_std = samples.std(0)
    expected_std[expected_std < 1e-6] = 1.0  # the constant default-dimension channels
    np.testing.assert_allclose(stats["channel_std"], expected_std, rtol=1e-6)
    assert len(stats["feature_mean"]) == len(stats["feature_scale"]) == 47
    json.dumps(stats)  # travels in run metadata


# ---- masking and independence -------------------------------------------------------------------

@pytest.mark.parametrize("kind", SEQUENCE_KINDS)
def test_padding_never_reaches_the_embedding(kind):
    model = _default_model(kind)
    windows, masks = _windows([1, 2, 10, 40, 64])
    garbage = windows.clone()
    pad = masks == 0
    garbage[pad] = torch.randn(int(pad.sum()), 8, generator=torch.Generator().manual_seed(0)) * 1e3
    garbage[0, 5, 2] = float("nan")
    garbage[1, 7, 0] = float("inf")
    with torch.no_grad():
        clean = model.encoder(windows, masks)
        dirty = model.encoder(garbage, masks)
        # The same fragment in a 16-row window (less padding) embeds the same.
        short = model.encoder(windows[:3, :16], masks[:3, :16])
    assert torch.isfinite(dirty).all()
    torch.testing.assert_close(dirty, clean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short, clean[:3], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", SEQUENCE_KINDS)
def test_embedding_depends_on_its_own_window_only(kind):
    model = _default_model(kind)
    windows, masks = _windows([7, 64, 33, 64, 2], seed=4)
    features = torch.randn(5, 47, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        alone = model.encoder(windows[:1], masks[:1])
        in_batch = model.encoder(windows, masks)
        torch.testing.assert_close(in_batch[:1], alone, atol=1e-5, rtol=1e-5)
        # Fragment 0 as the earlier one against two different partners: the same embedding.
        e_a1, _ = model.embed_pair(windows[:1], masks[:1], windows[1:2], masks[1:2])
        e_a2, _ = model.embed_pair(windows[:1], masks[:1], windows[4:5], masks[4:5])
        torch.testing.assert_close(e_a1, e_a2, atol=1e-5, rtol=1e-5)
        # forward == head(encoder(tail), encoder(head), features): what the two exported graphs compute.
        logits = model(windows[:4], masks[:4], windows[1:], masks[1:], features[:4])
        two_graphs = model.head(model.encoder(windows[:4], masks[:4]), model.encoder(windows[1:], masks[1:]),
                                features[:4])
    torch.testing.assert_close(logits, two_graphs, atol=1e-5, rtol=1e-5)
    assert logits.shape == (4,)


def test_masked_pooling():
    h = torch.tensor([[[1.0, -5.0], [3.0, -7.0], [float("nan"), 100.0]]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    torch.testing.assert_close(masked_mean(h, mask), torch.tensor([[2.0, -6.0]]))
    torch.testing.assert_close(masked_max(h, mask), torch.tensor([[3.0, -5.0]]))
    # Misuse (a fully masked row) stays finite instead of producing -inf or NaN.
    empty = torch.zeros(1, 3)
    assert torch.isfinite(masked_max(h, empty)).all() and torch.isfinite(masked_mean(h, empty)).all()


# ---- loss ---------------------------------------------------------------------------------------

def test_contrastive_loss():
    e = torch.zeros(2, 4)
    far = torch.full((2, 4), 3.0)  # RMS distance 3, beyond the margin of 2
    labels = torch.tensor([1.0, 0.0])
    assert float(contrastive_loss(e, e, labels, margin=2.0)) == pytest.approx(0.5 * 4.0, rel=1e-3)  # negative at d=0
    assert float(contrastive_loss(e, far, labels, margin=2.0)) == pytest.approx(0.5 * 9.0, rel=1e-3)  # positive at d=3
    weighted = contrastive_loss(e, far, labels, margin=2.0, pos_weight=3.0)
    assert float(weighted) == pytest.approx(0.5 * 27.0, rel=1e-3)


@pytest.mark.parametrize("kind", SEQUENCE_KINDS)
def test_pair_loss_adds_the_weighted_contrastive_term(kind):
    module = model_module(kind)
    stats = _realistic_stats()
    windows, masks = _windows([5, 64, 20, 64], seed=2)
    inputs = {"tail": windows[:2], "tail_mask": masks[:2], "head": windows[2:], "head_mask": masks[2:],
              "features": torch.randn(2, 47, generator=torch.Generator().manual_seed(2))}
    labels, pos_weight = torch.tensor([1.0, 0.0]), torch.tensor(4.0)
    for weight in (0.0, 0.5):
        torch.manual_seed(0)
        model = module.build(module.Config(contrastive_weight=weight), stats).eval()
        loss, logits = model.pair_loss(inputs, labels, pos_weight)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
        e_a, e_b = model.embed_pair(inputs["tail"], inputs["tail_mask"], inputs["head"], inputs["head_mask"])
        expected = bce + weight * contrastive_loss(e_a, e_b, labels, 2.0, pos_weight)
        torch.testing.assert_close(loss, expected)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---- training and checkpoints -------------------------------------------------------------------

def test_learns_a_separable_toy_set(trained):
    metrics = classification_metrics(trained["val"].labels, predict_logits(trained["model"], trained["val"]))
    assert metrics["roc_auc"] > 0.95, (trained["kind"], metrics)
    assert trained["result"]["epochs_run"] >= 1


def test_checkpoint_round_trip(trained, tmp_path):
    module, model = trained["module"], trained["model"]
    path = tmp_path / "model.pt"
    save_state(path, model.state_dict())
    # What a checkpoint consumer has: the JSON config and stats, and the weights-only state dict.
    config = module.Config(**json.loads(json.dumps(dataclasses.asdict(trained["config"]))))
    stats = json.loads(json.dumps(trained["stats"]))
    for source in (path, trained["run_dir"] / "best.pt"):
        fresh = module.build(config, stats)
        fresh.load_state_dict(load_state(source))
        np.testing.assert_allclose(predict_logits(fresh, trained["val"]), predict_logits(model, trained["val"]),
                                   rtol=0, atol=1e-6)


# ---- contract -----------------------------------------------------------------------------------

class _FixedTrial:
    """Stands in for an Optuna trial: the first categorical choice, the low end of every range."""

    def suggest_categorical(self, name, choices):
        return choices[0]

    def suggest_float(self, name, low, high, log=False):
        return low

    def suggest_int(self, name, low, high):
        return low


@pytest.mark.parametrize("kind", SEQUENCE_KINDS)
def test_module_contract(kind):
    module = model_module(kind)
    space = module.search_space(_FixedTrial())
    config = module.Config(**space["model"])
    TrainConfig(**{**module.DEFAULT_TRAIN, **space["train"]})
    TrainConfig(**module.DEFAULT_TRAIN)
    model = module.build(config, _realistic_stats())
    windows, masks = _windows([10, 64])
    with torch.no_grad():
        assert model.encoder(windows, masks).shape == (2, model.encoder.embedding_dim)
    json.dumps(dataclasses.asdict(config))


# ---- ONNX export --------------------------------------------------------------------------------

def _export(model, folder, dynamo=False):
    """The two-graph export as the export stage will call it (see the module docstrings)."""
    encoder_path, head_path = folder / "encoder.onnx", folder / "head.onnx"
    windows, masks = _windows([64, 10])  # batch >= 2, so the batch axis stays dynamic
    dim = model.encoder.embedding_dim
    rng = torch.Generator().manual_seed(3)
    head_inputs = (torch.randn(2, dim, generator=rng), torch.randn(2, dim, generator=rng),
                   torch.randn(2, 47, generator=rng))
    if dynamo:
        batch = torch.export.Dim("batch", min=1)
        kwargs = {"dynamo": True, "opset_version": 18}
        encoder_axes = {"dynamic_shapes": {"window": {0: batch}, "mask": {0: batch}}}
        head_axes = {"dynamic_shapes": {"emb_a": {0: batch}, "emb_b": {0: batch}, "features": {0: batch}}}
    else:
        kwargs = {"dynamo": False, "opset_version": 17}
        encoder_axes = {"dynamic_axes": {"window": {0: "batch"}, "mask": {0: "batch"}, "embedding": {0: "batch"}}}
        head_axes = {"dynamic_axes": {name: {0: "batch"} for name in ("emb_a", "emb_b", "features", "logit")}}
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter's deprecation notice and its RNN batch-size notice (no initial state is
        # passed, so it does not apply); the parity check below is what counts.
        warnings.simplefilter("ignore")
        torch.onnx.export(model.encoder, (windows, masks), str(encoder_path), input_names=["window", "mask"],
                          output_names=["embedding"], **kwargs, **encoder_axes)
        torch.onnx.export(model.head, head_inputs, str(head_path), input_names=["emb_a", "emb_b", "features"],
                          output_names=["logit"], **kwargs, **head_axes)
    return encoder_path, head_path


def _check_parity(model, encoder_path, head_path):
    import onnx
    import onnxruntime as ort

    for path in (encoder_path, head_path):
        onnx.checker.check_model(onnx.load(str(path)))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    encoder = ort.InferenceSession(str(encoder_path), options, providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(head_path), options, providers=["CPUExecutionProvider"])
    dim = model.encoder.embedding_dim
    assert [i.shape for i in encoder.get_inputs()] == [["batch", 64, 8], ["batch", 64]]
    assert encoder.get_outputs()[0].shape == ["batch", dim]
    rng = np.random.default_rng(7)
    lengths = [1, 2, 3, 7, 16, 31, 33, 63, 64, 64, 200]
    tails, tail_masks = _windows(lengths, seed=11)
    heads, head_masks = _windows(lengths[::-1], seed=12, fields=False)
    features = torch.from_numpy((rng.normal(0, 1, (len(lengths), 47)) * 30).astype(np.float32))
    with torch.no_grad():
        expected = model(tails, tail_masks, heads, head_masks, features).numpy()
        e_a_torch = model.encoder(tails, tail_masks).numpy()
    for batch in (slice(0, 1), slice(0, len(lengths)), slice(3, 8)):
        e_a = encoder.run(None, {"window": tails[batch].numpy(), "mask": tail_masks[batch].numpy()})[0]
        e_b = encoder.run(None, {"window": heads[batch].numpy(), "mask": head_masks[batch].numpy()})[0]
        np.testing.assert_allclose(e_a, e_a_torch[batch], rtol=0, atol=ONNX_TOLERANCE)
        logits = head.run(None, {"emb_a": e_a, "emb_b": e_b, "features": features[batch].numpy()})[0]
        np.testing.assert_allclose(logits, expected[batch], rtol=0, atol=ONNX_TOLERANCE)


@pytest.mark.parametrize("kind", SEQUENCE_KINDS)
def test_onnx_export_parity(kind, tmp_path):
    model = _default_model(kind, seed=5)
    _check_parity(model, *_export(model, tmp_path))


@pytest.mark.slow
def test_onnx_dynamo_export_parity(tmp_path):
    """The torch.export-based exporter works too (shown for the TCN; it takes ~10-40 s per model here)."""
    model = _default_model("tcn", seed=6)
    _check_parity(model, *_export(model, tmp_path, dynamo=True))


def test_default_architectures_have_the_documented_sizes():
    sizes = {kind: _default_model(kind).encoder.embedding_dim for kind in SEQUENCE_KINDS}
    assert sizes == {"siamese": 128, "tcn": 128, "transformer": 128}
    assert math.isclose(model_module("siamese").Config().contrastive_margin, 2.0)


# ---- warm start from a trained MLP --------------------------------------------------------------

def _trained_mlp(toy):
    """A small MLP fitted on the toy set's (noise) features, so its weights are not a fresh init."""
    mlp = model_module("mlp")
    train, val = toy
    stats = {"feature_mean": train.tensors["features"].mean(0).tolist(),
             "feature_scale": train.tensors["features"].std(0).tolist()}
    torch.manual_seed(3)
    model = mlp.build(mlp.Config(hidden=(16, 8), dropout=0.0), stats)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def test_warm_start_begins_exactly_at_the_mlp_and_keeps_it_frozen(toy, tmp_path):
    from training.models.sequence import warm_start_feature_branch

    train, val = toy
    mlp_model = _trained_mlp(toy)
    module = model_module("tcn")
    config = module.Config(head_hidden=(32, 16), window_length=32, feature_branch=(16, 8),
                           feature_branch_dropout=0.0, **SMALL["tcn"])
    torch.manual_seed(0)
    model = module.build(config, module.fit_stats(train))
    warm_start_feature_branch(model, mlp_model.state_dict(), freeze=True)
    model.eval()
    expected = predict_logits(mlp_model, type(val)(val.labels, {"features": val.tensors["features"]}))
    np.testing.assert_allclose(predict_logits(model, val), expected, rtol=0, atol=1e-5)

    frozen = {k: v.clone() for k, v in model.head.feature_branch.state_dict().items()}
    train_model(model, train, val, TrainConfig(epochs=2, batch_size=32, lr=5e-3, seed=0), tmp_path, progress=False)
    for k, v in model.head.feature_branch.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    # The encoder path learned something on top: the toy labels depend on the windows only.
    after = classification_metrics(val.labels, predict_logits(model, val))
    before = classification_metrics(val.labels, expected)
    assert after["roc_auc"] > before["roc_auc"] + 0.1, (before, after)


def test_warm_start_fine_tunes_the_branch_at_its_scaled_learning_rate(toy, tmp_path):
    from training.models.sequence import warm_start_feature_branch

    train, val = toy
    mlp_model = _trained_mlp(toy)
    module = model_module("tcn")
    config = module.Config(head_hidden=(32, 16), window_length=32, feature_branch=(16, 8),
                           feature_branch_dropout=0.0, feature_branch_lr_scale=0.1, **SMALL["tcn"])
    torch.manual_seed(0)
    model = module.build(config, module.fit_stats(train))
    warm_start_feature_branch(model, mlp_model.state_dict())   # follows the config: not frozen
    branch = list(model.head.feature_branch.parameters())
    assert all(p.requires_grad for p in branch)
    model.eval()
    expected = predict_logits(mlp_model, type(val)(val.labels, {"features": val.tensors["features"]}))
    np.testing.assert_allclose(predict_logits(model, val), expected, rtol=0, atol=1e-5)  # still starts as the MLP

    rest, tuned = model.param_groups(5e-3)
    assert rest["lr"] == 5e-3 and tuned["lr"] == pytest.approx(5e-4)
    assert {id(p) for p in tuned["params"]} == {id(p) for p in branch}
    assert not {id(p) for p in rest["params"]} & {id(p) for p in branch}
    assert len(rest["params"]) + len(tuned["params"]) == len(list(model.parameters()))

    before = {k: v.clone() for k, v in model.head.feature_branch.state_dict().items()}
    train_model(model, train, val, TrainConfig(epochs=2, batch_size=32, lr=5e-3, seed=0), tmp_path, progress=False)
    moved = [k for k, v in model.head.feature_branch.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.endswith("weight") for k in moved), moved
    # the scaler statistics are buffers: fine-tuning never touches them
    assert not [k for k in moved if "scaler" in k], moved

    # scale 0 (the default) freezes the branch and leaves it out of the optimiser
    frozen_model = module.build(dataclasses.replace(config, feature_branch_lr_scale=0.0), module.fit_stats(train))
    warm_start_feature_branch(frozen_model, mlp_model.state_dict())
    groups = frozen_model.param_groups(5e-3)
    assert len(groups) == 1
    assert not {id(p) for p in groups[0]["params"]} & {id(p) for p in frozen_model.head.feature_branch.parameters()}


def test_warm_start_hardness_is_minus_the_mlps_logit():
    from training.pairs import ScenarioPairs
    from training.train import _warm_hardness

    rng = np.random.default_rng(2)
    features = rng.normal(size=(50, 47)) * 3 + 1
    stats = {"feature_mean": features.mean(0).tolist(), "feature_scale": features.std(0).tolist()}
    mlp = model_module("mlp")
    torch.manual_seed(1)
    model = mlp.build(mlp.Config(hidden=(16, 8)), stats).eval()
    sp = ScenarioPairs(["i/1"], [], [], np.arange(50), np.arange(50), np.zeros(50, np.int64), np.zeros(50),
                       features, np.zeros(50), np.zeros(50, np.int64))
    hardness = _warm_hardness({"hidden": (16, 8), "state": model.state_dict()}, sp)
    with torch.no_grad():
        expected = -model(torch.as_tensor(features, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(hardness, expected, rtol=0, atol=1e-6)


def test_warm_start_refuses_weights_of_another_shape(toy):
    from training.models.sequence import warm_start_feature_branch

    train, _ = toy
    module = model_module("tcn")
    stats = module.fit_stats(train)
    without = module.build(module.Config(window_length=32, **SMALL["tcn"]), stats)
    with pytest.raises(ValueError, match="no feature branch"):
        warm_start_feature_branch(without, _trained_mlp(toy).state_dict())
    other = module.build(module.Config(window_length=32, feature_branch=(32,), **SMALL["tcn"]), stats)
    with pytest.raises(ValueError, match="do not fit the feature branch"):
        warm_start_feature_branch(other, _trained_mlp(toy).state_dict())


def test_warm_started_head_exports_with_its_branch(toy, tmp_path):
    from training.models.sequence import warm_start_feature_branch

    module = model_module("tcn")
    torch.manual_seed(5)
    stats = _realistic_stats(5)
    model = module.build(module.Config(feature_branch=(16, 8), feature_branch_dropout=0.0), stats)
    mlp_model = model_module("mlp").build(model_module("mlp").Config(hidden=(16, 8)), stats)
    warm_start_feature_branch(model, mlp_model.state_dict())
    with torch.no_grad():  # a trained head's last layer is no longer zero
        model.head.mlp[-1].weight.normal_(0, 0.1)
    model.eval()
    _check_parity(model, *_export(model, tmp_path))


def test_warm_start_refuses_an_mlp_trained_on_other_splits(tmp_path):
    from training.pairs import DatasetSpec
    from training.train import _mlp_warm_start, train_run

    spec = DatasetSpec()
    run = tmp_path / "mlp"
    run.mkdir()
    (run / "model_config.json").write_text(json.dumps({"kind": "mlp", "hidden": [16, 8], "dropout": 0.1}))
    (run / "dataset.json").write_text(json.dumps({**spec.describe(), "train_seeds": [11, 13]}))
    with pytest.raises(ValueError, match="other data.*train_seeds"):
        _mlp_warm_start(str(run), spec)
    (run / "model_config.json").write_text(json.dumps({"kind": "tcn"}))
    with pytest.raises(ValueError, match="'tcn' run"):
        _mlp_warm_start(str(run), spec)
    with pytest.raises(ValueError, match="MLP and the sequence models"):
        train_run("lr", str(tmp_path / "x"), spec, init_features_from=str(run))
    with pytest.raises(ValueError, match="'tcn' run"):   # an MLP fine-tunes only an MLP run
        train_run("mlp", str(tmp_path / "x"), spec, init_features_from=str(run))
    assert not (tmp_path / "x").exists()
