"""Adding a compression method is one registration: a toy method runs prune -> fine-tune -> record -> chapter table."""
import pytest
import torch

from ocular_utils import METHODS
from ocular_utils.compression import registry, unstructured
from ocular_utils.compression.registry import compress_model, get_method
from ocular_utils.models.counting import compression_ratio
from ocular_utils.models.files import save_model
from ocular_utils.models.networks import build_model
from ocular_utils.report import results
from ocular_utils.runner.session import reference_params, start_run
from ocular_utils.training.recipes import fit_to_budget
from ocular_utils.verification.scoring import evaluate_on_test


@pytest.fixture()
def toy_method():
    """Keeps the *smallest* weights of each tensor: a deliberately bad method, registered for the test only."""

    @unstructured.register_unstructured("toy_inverse", scope="layer")
    def inverse_magnitude(model, tensors, context):
        """1 / |w|: the smallest weights score highest."""
        return {(m, n): 1 / (getattr(m, n).detach().abs() + 1e-12) for _, m, n in tensors}

    yield "toy_inverse"
    registry.METHODS.pop("toy_inverse")


def test_registered_method_runs_through_the_grid_cell_and_the_chapter_table(toy_method, tiny_data, visob_root,
                                                                              tmp_path):
    assert toy_method in METHODS and get_method(toy_method).family == registry.UNSTRUCTURED
    with pytest.raises(ValueError, match="already registered"):
        unstructured.register_unstructured(toy_method, "layer")(unstructured.weight_scores)
    torch.manual_seed(0)
    base = build_model("resnet18", tiny_data.split.num_classes, 16)
    save_model(base, tmp_path / "base", identities=tiny_data.split.identity_hash)
    namespace = dict(data={"root": str(visob_root), "image_size": [32, 48], "val_fraction": 0.2},
                     base_dir=str(tmp_path / "base"), method=toy_method, compression=4,
                     pruning={"finetune": {"batch_size": 16}}, budget={"images": 32, "points": [0.5, 1.0]},
                     role="grid", seed=None, threads=None,
                     device="cpu", replicates=5, precision=None, run_dir=str(tmp_path / "runs" / "toy"))
    run = start_run("prune", namespace)
    dense = run.load_model(namespace["base_dir"])
    dense_ratio = compression_ratio(dense)
    model = compress_model(dense, toy_method, 4, run.data, run.pruning)
    assert compression_ratio(model) == pytest.approx(4, rel=0.01)
    original, kept_mask = dense.backbone.conv1.weight.detach().abs(), model.backbone.conv1.weight.detach() != 0
    assert original[kept_mask].max() <= original[~kept_mask].min(), "the toy score decides which weights stay"
    assert compression_ratio(dense) == dense_ratio, "compression leaves its input unchanged"
    with run.timed("finetune"):
        result = fit_to_budget(model, run.data, run.run_dir, run.pruning.finetune, run.budget, device=run.device)
    evaluation = evaluate_on_test(model, run.data, run.device, run.settings.replicates)
    record = run.finish(model, evaluation, result, family=get_method(toy_method).family, method=toy_method,
                        requested_compression=4, reference_params=reference_params(namespace["base_dir"]),
                        sparse=True, extra_metrics={"before.eer": 0.5})
    assert record.achieved_compression == pytest.approx(4, rel=0.01) and record.training_images == 32
    assert record.seed == 0 and isinstance(record.still_improving, bool), "records carry budget, seed, improvement"
    assert record.details["improvement"]["doubled_to"] == 32 and "validation_eer" in record.metrics
    assert record.role == "grid" and record.details["trained_images"] == 32, "trunk (16) and decay branch (16)"
    grid = results.load_results(results_dir=tmp_path / "runs").pruning
    row = grid.iloc[0]
    assert (row["method"], row["requested_compression"], row["family"], row["label"]) == (
        toy_method, 4.0, "unstructured pruning", "toy_inverse 4x")
    assert row["eer"] == evaluation.report["eer"] and row["eer_before_finetune"] == 0.5
    assert row["finetune_seconds"] == record.timings["finetune"] > 0


def test_methods_and_routes_share_one_registry_kind_with_clear_errors():
    from ocular_utils.compression import channels
    from ocular_utils.compression.routes import ROUTES
    from ocular_utils.core.registry import Registry

    assert isinstance(METHODS, Registry) and isinstance(ROUTES, Registry)
    with pytest.raises(ValueError, match=r"unknown compression method 'nope'; expected one of \[.*'layer_weight'"):
        get_method("nope")
    layer = torch.nn.Linear(4, 4)
    with pytest.raises(ValueError, match="'channel_magnitude' is channel pruning, not unstructured pruning"):
        unstructured.prune(layer, "channel_magnitude", 4)
    with pytest.raises(ValueError, match="'layer_weight' is unstructured pruning, not channel pruning"):
        channels.channel_prune(layer, "layer_weight", 4, torch.zeros(1, 4))
    assert get_method("layer_weight").parts["scope"] == "layer"
