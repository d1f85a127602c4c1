"""The shared training loop: learns, selects on validation, resumes, is deterministic on CPU."""
import numpy as np
import pytest
import torch

import ocular_utils.training.loop as training
from ocular_utils.models.networks import build_model
from ocular_utils.training.loop import TrainConfig, fit
from ocular_utils.verification.scoring import validation_of

CONFIG = dict(epochs=3, batch_size=16, optimizer="adamw", lr=0.002, weight_decay=0.0, augment=False,
              max_batches_per_epoch=6)


def _run(data, tmp=None, **changes):
    torch.manual_seed(0)
    model = build_model("resnet18", data.split.num_classes, 16)
    result = fit(model, data.store, data.split.train, TrainConfig(**(CONFIG | changes)),
                 validate=validation_of(data, "cpu"), checkpoint_dir=tmp, progress=False)
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
            fit(model, tiny_data.store, tiny_data.split.train, config, validate=validation_of(tiny_data, "cpu"),
                checkpoint_dir=partial_dir, progress=False)
    finally:
        training.atomic_torch_save = original
    torch.manual_seed(123)  # a different init must not matter: the checkpoint restores everything
    resumed_model = build_model("resnet18", tiny_data.split.num_classes, 16)
    resumed = fit(resumed_model, tiny_data.store, tiny_data.split.train, config,
                  validate=validation_of(tiny_data, "cpu"), checkpoint_dir=partial_dir, progress=False)
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


def test_budget_forks_the_trunk_before_each_point_and_cuts_it_into_passes():
    from ocular_utils.training.budget import BudgetConfig, RunBudget

    budget = RunBudget(3072, [0.125, 0.25, 0.5, 1.0, 2.0], decay_fraction=0.2)
    forks = budget.forks(32)
    # point p: p * 96 batches in all, of which 80% on the trunk and 20% in the decay branch
    assert [(f.trunk_batches, f.branch_batches, f.images) for f in forks] == [
        (10, 2, 384), (19, 5, 768), (38, 10, 1536), (77, 19, 3072), (154, 38, 6144)]
    chunks, at = budget.chunks(32, 1620)  # one pass: 50 batches
    assert max(chunks) <= 50 and sum(chunks) == 154, "the trunk ends at the last fork"
    assert [sum(chunks[:k]) for k in at] == [10, 19, 38, 77, 154], "every fork falls on a chunk's end"
    assert budget.trained_images(32) == 32 * (154 + 2 + 5 + 10 + 19 + 38)
    dedicated = RunBudget(3072, [1.0], decay_fraction=0.0)
    assert [(f.trunk_batches, f.branch_batches) for f in dedicated.forks(32)] == [(96, 0)]
    with pytest.raises(ValueError, match="less than one batch"):
        RunBudget(64, [0.125, 1.0]).forks(32)
    chunks, at = RunBudget(32, [0.5, 1.0]).chunks(16, 160)  # tiny: both points fork after one batch
    assert chunks == [1] and [f.branch_batches for f in at[1]] == [0, 1]
    with pytest.raises(ValueError, match="decay_fraction"):
        RunBudget(64, [1.0], decay_fraction=1.0)
    config = BudgetConfig()
    assert config.for_run(True) == {"images": 3072, "points": [0.125, 0.25, 0.5, 1.0, 2.0], "decay_fraction": 0.2,
                                    "warmup_fraction": 0.1}
    # the warm-up is a share of the budget, not a pass: 307 images of 3072, before the first look's fork
    # (B/2 forks after 38 batches = 1216 images), whatever the data set's size
    assert RunBudget(3072, [0.5, 1.0]).warmup_passes(1600) * 1600 == pytest.approx(307.2)
    assert RunBudget(3072, [0.5, 1.0]).warmup_passes(1600) * 1600 < 38 * 32
    with pytest.raises(ValueError, match="warmup_fraction"):
        RunBudget(64, [1.0], warmup_fraction=0.6)
    assert config.for_run(False, ratio=32)["images"] == 1536
    assert config.for_run(False, ratio=32, full=True)["images"] == 3072, "runs behind a verdict keep the full budget"
    with pytest.raises(ValueError, match="points holding 1.0"):
        BudgetConfig(points=[0.5, 2.0])


def test_linear_schedule_ends_at_zero():
    from ocular_utils.training.loop import make_scheduler

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = make_scheduler(optimizer, TrainConfig(lr=0.1, schedule="linear", chunk_batches=[3, 2]), 10)
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.1, 0.08, 0.06, 0.04, 0.02]) and optimizer.param_groups[0]["lr"] == 0


def _budget_run(data, run_dir, budget):
    from ocular_utils.training.recipes import fit_to_budget

    torch.manual_seed(0)
    model = build_model("resnet18", data.split.num_classes, 16)
    config = TrainConfig(batch_size=16, optimizer="sgd", lr=0.01, weight_decay=0.0, augment=False,
                         schedule="constant")
    return model, fit_to_budget(model, data, run_dir, config, budget, progress=False)


def test_a_budgeted_run_refuses_a_warmup_counted_in_passes(tiny_data, tmp_path):
    from ocular_utils.training.recipes import fit_to_budget

    model = build_model("resnet18", tiny_data.split.num_classes, 16)
    with pytest.raises(ValueError, match="budget.warmup_fraction"):
        fit_to_budget(model, tiny_data, tmp_path, TrainConfig(warmup_epochs=1.0), {"images": 64}, progress=False)


def test_training_to_a_budget_keeps_the_finished_model_at_the_budget(tiny_data, tmp_path):
    from ocular_utils.core.atomic import load_state
    from ocular_utils.training.along import along_the_way, improvement

    model, result = _budget_run(tiny_data, tmp_path, {"images": 64, "points": [0.5, 1.0, 2.0],
                                                     "decay_fraction": 0.25})
    assert result.history["images"].sum() == 96, "the trunk runs to the last fork: 75% of 2B = 6 batches"
    assert result.history["branch_images"].sum() == 16 * (1 + 1 + 2), "a decay branch at each point"
    points = along_the_way(result.history)
    assert list(points["budget_images"]) == [32, 64, 128] and points["test_eer"].notna().all()
    assert points["val_eer"].notna().all()
    assert sorted(p.name for p in (tmp_path / "along").iterdir()) == ["scores-128.npz", "scores-32.npz",
                                                                      "scores-64.npz"]
    at_budget = load_state(tmp_path / "checkpoints" / "budget.pt")["model"]
    assert all(torch.equal(v, at_budget[k]) for k, v in model.state_dict().items()), "the model is the one at B"
    check = improvement(tmp_path, points, replicates=20)
    assert (check["images"], check["doubled_to"]) == (64, 128) and isinstance(check["still_improving"], bool)
    # the model at the budget is scored once: its saved scores give the same evaluation as a second pass
    from ocular_utils.training.along import point_scores
    from ocular_utils.verification.scoring import evaluate_on_test, evaluate_saved_scores

    saved = evaluate_saved_scores(point_scores(tmp_path, 64), tiny_data, replicates=20)
    again = evaluate_on_test(model, tiny_data, "cpu", replicates=20)
    assert saved.report == again.report and saved.trial_list == again.trial_list
    assert saved.subsets.equals(again.subsets)
    # ... and its scores are stored once: the run's scores.npz is the file saved along the way, which holds what
    # saving the second pass's scores writes
    from ocular_utils.verification.scoring import load_trial_scores, save_scores

    assert save_scores(saved, tmp_path).samefile(point_scores(tmp_path, 64))
    written = load_trial_scores(save_scores(again, tmp_path / "again"))
    linked = load_trial_scores(tmp_path)
    assert written.keys() == linked.keys() and all(np.array_equal(written[k], linked[k]) for k in written)


def test_decay_branches_leave_the_trunk_untouched(tiny_data, tmp_path):
    """The trunk after its last fork is the same whether or not branches ran off it (weights restored)."""
    import ocular_utils.training.along as along

    with_branches, _ = _budget_run(tiny_data, tmp_path / "a", {"images": 64, "points": [0.5, 1.0, 2.0],
                                                               "decay_fraction": 0.25})
    original = along.AlongTheWay.restore_budget_model
    along.AlongTheWay.restore_budget_model = lambda self, model, device: 0  # keep the trunk's final state
    try:
        trunk_a, _ = _budget_run(tiny_data, tmp_path / "b", {"images": 64, "points": [0.5, 1.0, 2.0],
                                                             "decay_fraction": 0.25})
        original_branch = along.AlongTheWay.decay_branch
        along.AlongTheWay.decay_branch = lambda self, context, fork: None
        try:
            trunk_b, _ = _budget_run(tiny_data, tmp_path / "c", {"images": 64, "points": [0.5, 1.0, 2.0],
                                                                 "decay_fraction": 0.25})
        finally:
            along.AlongTheWay.decay_branch = original_branch
    finally:
        along.AlongTheWay.restore_budget_model = original
    assert all(torch.equal(x, y) for x, y in zip(trunk_a.state_dict().values(), trunk_b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(with_branches.state_dict().values(),
                                                     trunk_a.state_dict().values())), "the budget model is a branch"


def test_bf16_training_runs_under_autocast_and_is_deterministic(tiny_data):
    def run(precision):
        torch.manual_seed(0)
        model = build_model("resnet18", tiny_data.split.num_classes, 16)
        fit(model, tiny_data.store, tiny_data.split.train, TrainConfig(**(CONFIG | {"epochs": 1})),
            progress=False, precision=precision)
        return model.state_dict()

    fp32, bf16, again = run("fp32"), run("bf16"), run("bf16")
    assert all(v.dtype == fp32[k].dtype for k, v in bf16.items())  # weights stay fp32
    assert not all(torch.equal(fp32[k], v) for k, v in bf16.items())  # the steps did run in bf16
    assert all(torch.equal(again[k], v) for k, v in bf16.items())
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        fit(build_model("resnet18", tiny_data.split.num_classes, 16), tiny_data.store, tiny_data.split.train,
            TrainConfig(**CONFIG), progress=False, precision="auto")


def test_precision_auto_takes_bf16_only_where_it_is_native_and_pays(monkeypatch):
    from ocular_utils.core import environment

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    assert environment.native_bf16("cpu")
    monkeypatch.setattr(environment, "BF16_PAYS_ON", ("cpu", "cuda"))
    assert environment.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(environment, "BF16_PAYS_ON", ("cuda",))
    assert environment.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(environment, "BF16_PAYS_ON", ("cpu", "cuda"))
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True})
    assert not environment.native_bf16("cpu")
    assert environment.resolve_precision("auto", "cpu") == "fp32"
    assert environment.resolve_precision("bf16", "cpu") == "bf16"  # asked for: honoured, slow or not
    assert environment.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        environment.resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        environment.RunSettings(precision="fp16")
    with pytest.raises(ValueError, match="needs a CPU or CUDA device"):
        environment.resolve_precision("bf16", "meta")


def test_channels_last_training_learns_alike_and_returns_a_contiguous_model(tiny_data, monkeypatch):
    from ocular_utils.core import environment

    def run(channels_last):
        torch.manual_seed(0)
        model = build_model("resnet18", tiny_data.split.num_classes, 16)
        result = fit(model, tiny_data.store, tiny_data.split.train, TrainConfig(**(CONFIG | {"epochs": 2})),
                     progress=False, channels_last=channels_last)
        return model, result.history["train_loss"].tolist()

    plain, plain_loss = run(False)
    last, last_loss = run(True)
    assert all(p.is_contiguous() for p in last.parameters())  # saved and exported as ever
    assert torch.allclose(torch.tensor(plain_loss), torch.tensor(last_loss), rtol=1e-3)
    weights = [(plain.state_dict()[k].float(), v.float()) for k, v in last.state_dict().items()
               if v.is_floating_point()]
    change = sum((a - b).norm() ** 2 for a, b in weights).sqrt() / sum(a.norm() ** 2 for a, _ in weights).sqrt()
    assert change < 1e-2, f"channels_last training moved the weights by {change:.2e} of their norm"
    assert environment.training_memory_format("cpu") == torch.contiguous_format  # CPU records unchanged
    assert environment.training_memory_format("cuda") == torch.channels_last
    monkeypatch.setattr(environment, "CHANNELS_LAST_PAYS_ON", ())
    assert environment.training_memory_format("cuda") == torch.contiguous_format
