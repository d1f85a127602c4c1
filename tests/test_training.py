"""The shared training loop: learns, selects on validation, resumes, is deterministic on CPU."""
import pytest
import torch

import ocular_utils.training.loop as training
from ocular_utils.models.networks import build_model
from ocular_utils.training.loop import TrainConfig, fit

CONFIG = dict(epochs=3, batch_size=16, optimizer="adamw", lr=0.002, weight_decay=0.0, augment=False,
              max_batches_per_epoch=6)


def _run(data, tmp=None, **changes):
    torch.manual_seed(0)
    model = build_model("resnet18", data.split.num_classes, 16)
    result = fit(model, data.store, data.split.train, TrainConfig(**(CONFIG | changes)),
                 validate=data.validation("cpu"), checkpoint_dir=tmp, progress=False)
    return model, result


def test_training_lowers_the_loss(tiny_data):
    _, result = _run(tiny_data)
    losses = result.history["train_loss"].tolist()
    assert losses[-1] < losses[0]
    assert {"val_eer", "val_auc", "images", "seconds"} <= set(result.history.columns)
    assert result.best_epoch == int(result.history.loc[result.history["val_eer"].idxmin(), "epoch"])


def test_deterministic_on_cpu(tiny_data):
    a, ra = _run(tiny_data)
    b, rb = _run(tiny_data)
    assert ra.history["train_loss"].tolist() == rb.history["train_loss"].tolist()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_resume_matches_an_uninterrupted_run(tiny_data, tmp_path):
    full, full_result = _run(tiny_data, tmp_path / "full")
    # interrupt a run right after its first epoch's checkpoint is written, then resume it
    torch.manual_seed(0)
    model = build_model("resnet18", tiny_data.split.num_classes, 16)
    config = TrainConfig(**CONFIG)
    partial_dir = tmp_path / "part"

    calls = {"n": 0}
    original = training.atomic_torch_save

    def crash_after_first_epoch(obj, path):
        original(obj, path)
        if str(path).endswith("last.pt"):
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyboardInterrupt

    training.atomic_torch_save = crash_after_first_epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(model, tiny_data.store, tiny_data.split.train, config, validate=tiny_data.validation("cpu"),
                checkpoint_dir=partial_dir, progress=False)
    finally:
        training.atomic_torch_save = original
    torch.manual_seed(123)  # a different init must not matter: the checkpoint restores everything
    resumed_model = build_model("resnet18", tiny_data.split.num_classes, 16)
    resumed = fit(resumed_model, tiny_data.store, tiny_data.split.train, config, validate=tiny_data.validation("cpu"),
                  checkpoint_dir=partial_dir, progress=False)
    assert resumed.resumed_from == 1
    assert resumed.history["train_loss"].tolist() == pytest.approx(full_result.history["train_loss"].tolist())
    for x, y in zip(resumed_model.state_dict().values(), full.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-6)
    best = torch.load(partial_dir / "best.pt", weights_only=True)
    assert set(best["model"]) == set(full.state_dict()) and best["epoch"] == resumed.best_epoch


def test_changed_settings_refuse_to_resume(tiny_data, tmp_path):
    _run(tiny_data, tmp_path, epochs=1)
    with pytest.raises(ValueError, match="other training settings"):
        _run(tiny_data, tmp_path, epochs=1, lr=0.01)


def test_unknown_settings_are_named():
    with pytest.raises(ValueError, match="TrainConfig has unknown keys \\['epoch'\\]; known: \\['augment'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="unknown optimizer"):
        TrainConfig(optimizer="lion")
