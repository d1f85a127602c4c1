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


def test_budget_is_cut_into_chunks_that_land_on_the_points():
    from ocular_utils.training.budget import BudgetConfig, RunBudget

    assert RunBudget(3072, [0.125, 0.25, 0.5, 1.0, 2.0]).chunks(32, 1620) == (12, 16, [1, 2, 4, 8, 16])
    batches, chunks, at = RunBudget(1_024_000, [0.125, 0.5, 1.0]).chunks(128, 50_000)
    assert (chunks, at) == (24, [3, 12, 24]) and batches == 333, "a first point longer than one pass is split"
    with pytest.raises(ValueError, match="whole multiples"):
        RunBudget(3072, [0.3, 1.0]).chunks(32, 1620)
    with pytest.raises(ValueError, match="less than one batch"):
        RunBudget(64, [0.125, 1.0]).chunks(32, 1620)
    config = BudgetConfig()
    assert config.for_run(True) == {"images": 3072, "points": [0.125, 0.25, 0.5, 1.0, 2.0]}
    assert config.for_run(False, ratio=32) == {"images": 1536, "points": [0.125, 0.25, 0.5, 1.0]}
    with pytest.raises(ValueError, match="points holding 1.0"):
        BudgetConfig(points=[0.5, 2.0])


def test_training_to_a_budget_keeps_the_model_at_the_budget(tiny_data, tmp_path):
    from ocular_utils.core.atomic import load_state
    from ocular_utils.training.budget import along_the_way, convergence
    from ocular_utils.training.recipes import fit_to_budget

    torch.manual_seed(0)
    model = build_model("resnet18", tiny_data.split.num_classes, 16)
    config = TrainConfig(batch_size=16, optimizer="adamw", lr=0.002, weight_decay=0.0, augment=False)
    result = fit_to_budget(model, tiny_data, tmp_path, config, {"images": 32, "points": [0.5, 1.0, 2.0]},
                           progress=False)
    assert result.history["images"].sum() == 64, "an extended run goes on to twice its budget"
    points = along_the_way(result.history)
    assert list(points["budget_images"]) == [16, 32, 64] and points["test_eer"].notna().all()
    assert sorted(p.name for p in (tmp_path / "along").iterdir()) == ["scores-16.npz", "scores-32.npz",
                                                                      "scores-64.npz"]
    at_budget = load_state(tmp_path / "checkpoints" / "budget.pt")["model"]
    assert all(torch.equal(v, at_budget[k]) for k, v in model.state_dict().items()), "the model is the one at B"
    check = convergence(tmp_path, 32, replicates=20)
    assert (check["images"], check["doubled_to"]) == (32, 64) and isinstance(check["converged"], bool)
