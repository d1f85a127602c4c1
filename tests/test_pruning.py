"""The five unstructured methods (ShrinkBench semantics), storage, and channel pruning."""
import copy

import pytest
import torch
from torch import nn

from ocular_utils.compression import channels as structured
from ocular_utils.compression import unstructured as pruning
from ocular_utils.models import counting as costs
from ocular_utils.models import files as storage
from ocular_utils.models.networks import OcularNet, build_model, deployed_network
from ocular_utils.training.loop import TrainConfig, fit


def small_net(seed=0) -> OcularNet:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return OcularNet(backbone, 16, 12, 5)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 10, 10, generator=g), torch.randint(0, 5, (8,), generator=g)


def masks(model):
    return {q: getattr(m, t + "_mask") for q, m, t in costs.prunable_tensors(model)}


def test_prunable_tensors_and_counts():
    model = small_net()
    names = [q for q, _, _ in costs.prunable_tensors(model)]
    assert names == ["backbone.0.weight", "backbone.0.bias", "backbone.3.weight", "embedding.0.weight",
                     "embedding.0.bias"]
    counts = costs.parameter_counts(model)
    head = sum(p.numel() for p in model.head.parameters())
    assert counts["total"] == sum(p.numel() for p in model.parameters()) - head
    assert counts["prunable"] == 8 * 27 + 8 + 16 * 72 + 12 * 16 + 12


def test_keep_fraction_formula_and_impossible_ratios():
    assert pruning.keep_fraction(1000, 900, 2) == pytest.approx((500 - 100) / 900)
    assert pruning.keep_fraction(1000, 900, 2, unprunable_nonzero=40) == pytest.approx((500 - 40) / 900)
    with pytest.raises(ValueError, match="impossible"):
        pruning.keep_fraction(1000, 900, 20)
    with pytest.raises(ValueError, match=">= 1"):
        pruning.keep_fraction(1000, 900, 0.5)
    with pytest.raises(ValueError, match="unknown unstructured pruning method"):
        pruning.prune(small_net(), "magnitude", 2)


@pytest.mark.parametrize("compression", [2, 4])
def test_layerwise_keeps_the_same_fraction_of_each_tensor_by_magnitude(compression):
    model = small_net()
    dense = {q: getattr(m, t).detach().clone() for q, m, t in costs.prunable_tensors(model)}
    counts = costs.parameter_counts(model)
    zero_bn_biases = 8 + 16 + 12  # fresh BatchNorm biases (2d: 8, 16; embedding 1d: 12) are exactly zero
    f = pruning.keep_fraction(counts["total"], counts["prunable"], compression,
                              unprunable_nonzero=counts["total"] - counts["prunable"] - zero_bn_biases)
    pruning.prune(model, "layer_weight", compression)
    for name, mask in masks(model).items():
        kept = int(mask.sum())
        assert kept == mask.numel() - int(round((1 - f) * mask.numel())), name
        w = dense[name].abs().flatten()
        m = mask.flatten().bool()
        assert w[m].min() >= w[~m].max(), f"{name}: a pruned weight is larger than a kept one"


def test_global_uses_one_threshold():
    model = small_net()
    dense = torch.cat([getattr(m, t).detach().abs().flatten() for _, m, t in costs.prunable_tensors(model)])
    pruning.prune(model, "global_weight", 3)
    kept = torch.cat([mk.flatten() for mk in masks(model).values()]).bool()
    assert dense[kept].min() >= dense[~kept].max()
    fractions = [float(mk.float().mean()) for mk in masks(model).values()]
    assert max(fractions) - min(fractions) > 0.05  # one threshold, different fractions per tensor
    assert costs.compression_ratio(model) == pytest.approx(3, rel=0.01)


@pytest.mark.parametrize("method", ["global_gradient", "layer_gradient"])
def test_gradient_methods_rank_by_weight_times_gradient(method):
    model, x_y = small_net(), batch()
    reference = copy.deepcopy(model)
    reference.train()
    nn.functional.cross_entropy(reference(x_y[0]), x_y[1]).backward()
    scores = {q: (getattr(m, t) * getattr(m, t).grad).abs().detach()
              for q, m, t in costs.prunable_tensors(reference)}
    running = model.backbone[1].running_mean.clone()
    pruning.prune(model, method, 2, batch=x_y)
    assert torch.equal(model.backbone[1].running_mean, running), "scoring must not change BatchNorm statistics"
    if method == "global_gradient":
        flat = torch.cat([s.flatten() for s in scores.values()])
        kept = torch.cat([mk.flatten() for mk in masks(model).values()]).bool()
        assert flat[kept].min() >= flat[~kept].max()
    else:
        for name, mask in masks(model).items():
            s, m = scores[name].flatten(), mask.flatten().bool()
            assert s[m].min() >= s[~m].max(), name
    with pytest.raises(ValueError, match="one training batch"):
        pruning.prune(small_net(), method, 2)


def test_random_is_seeded_and_close_to_f():
    a, b, c = small_net(), small_net(), small_net()
    for model, seed in ((a, 1), (b, 1), (c, 2)):
        pruning.prune(model, "random", 4, seed=seed)
    assert all(torch.equal(x, y) for x, y in zip(masks(a).values(), masks(b).values()))
    assert not all(torch.equal(x, y) for x, y in zip(masks(a).values(), masks(c).values()))
    counts = costs.parameter_counts(small_net())
    f = pruning.keep_fraction(counts["total"], counts["prunable"], 4, counts["total"] - counts["prunable"] - 36)
    kept = torch.cat([m.flatten() for m in masks(a).values()]).float().mean()
    assert kept == pytest.approx(f, abs=0.05)


def test_refuses_to_prune_twice():
    model = pruning.prune(small_net(), "layer_weight", 2)
    with pytest.raises(ValueError, match="already carries pruning masks"):
        pruning.prune(model, "layer_weight", 2)


@pytest.fixture(scope="module")
def resnet50():
    torch.manual_seed(0)
    return build_model("resnet50", num_classes=10, embedding_dim=128)


@pytest.mark.parametrize("method", ["global_weight", "layer_weight", "global_gradient", "layer_gradient"])
def test_achieved_ratio_within_one_percent_on_resnet50(resnet50, method):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    for compression in (2, 4, 8, 16, 32):
        model = copy.deepcopy(resnet50)
        pruning.prune(model, method, compression, batch=(x, y))
        assert costs.compression_ratio(model) == pytest.approx(compression, rel=0.01), (method, compression)


def test_masks_survive_fine_tuning_and_files_round_trip(tiny_data, tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", tiny_data.split.num_classes, 16)
    pruning.prune(model, "layer_weight", 8)
    before = {q: mask.clone() for q, mask in masks(model).items()}
    fit(model, tiny_data.store, tiny_data.split.train,
        TrainConfig(epochs=1, batch_size=16, optimizer="sgd", lr=0.01, weight_decay=0.01, max_batches_per_epoch=3),
        progress=False)
    for q, m, t in costs.prunable_tensors(model):
        assert torch.equal(getattr(m, t + "_mask"), before[q]), f"mask of {q} changed"
        assert not getattr(m, t)[before[q] == 0].any(), f"a pruned entry of {q} came back"
    nonzero = costs.parameter_counts(model)["nonzero"]
    pruning.make_permanent(model)
    assert not pruning.is_pruned(model) and costs.parameter_counts(model)["nonzero"] == nonzero
    dense_bytes = storage.save_state_dict(model.state_dict(), tmp_path / "d.pt")
    sparse_bytes = storage.save_state_dict(model.state_dict(), tmp_path / "s.pt", sparse=True)
    assert sparse_bytes < dense_bytes / 3
    x = torch.randn(2, 3, 32, 48)
    model.eval()
    for path in ("d.pt", "s.pt"):
        clone = build_model("resnet18", tiny_data.split.num_classes, 16).eval()
        clone.load_state_dict(storage.load_state_dict_file(tmp_path / path))
        assert costs.parameter_counts(clone)["nonzero"] == nonzero
        assert torch.allclose(clone.embed(x), model.embed(x), atol=1e-6)
    half = storage.serialized_size(model.state_dict(), sparse=True, half=True)
    assert half < sparse_bytes


def test_saved_sizes_come_from_one_encoding_and_equal_encoding_each_variant(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", 6, 16)
    pruning.prune(model, "layer_weight", 8)
    pruning.make_permanent(model)
    sizes = storage.save_model(model, tmp_path, sparse=True, gzip_size=True)
    state = model.state_dict()
    deployed = {k: v for k, v in state.items() if not k.startswith("head.")}
    assert sizes["file_bytes"] == (tmp_path / "model.sparse.pt").stat().st_size
    assert sizes["deployed_dense_bytes"] == storage.serialized_size(deployed)
    assert sizes["deployed_dense_gzip_bytes"] == storage.serialized_size(deployed, compress=True)
    assert sizes["deployed_sparse_bytes"] == storage.serialized_size(deployed, sparse=True)
    assert sizes["deployed_sparse_half_bytes"] == storage.serialized_size(deployed, sparse=True, half=True)
    derived = storage.halved(storage.select_keys(storage.sparse_state_dict(state), lambda k: not k.startswith("head.")))
    direct = storage.sparse_state_dict(deployed, half=True)
    assert derived["half"] is True and list(derived["sparse"]) == list(direct["sparse"])
    assert list(derived["dense"]) == list(direct["dense"]) and derived["sparse"]
    for part in ("dense", "sparse"):
        for key, value in direct[part].items():
            pairs = [(value, derived[part][key])] if part == "dense" else \
                [(value[f], derived[part][key][f]) for f in value]
            assert all(a.dtype == b.dtype and torch.equal(a, b) for a, b in pairs), key
    assert storage.load_state_dict_file(tmp_path / "model.sparse.pt").keys() == state.keys()


@pytest.mark.parametrize("method", ["channel_magnitude", "channel_taylor"])
def test_channel_pruning_shrinks_macs_and_reloads(method, tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet50", 10, 128)
    x = torch.randn(4, 3, 64, 64)
    y = torch.arange(4)
    dense = costs.model_cost(deployed_network(model), (64, 64))
    small = structured.channel_prune(model, method, 8, x[:1], batch=(x, y))
    cost = costs.model_cost(deployed_network(small), (64, 64))
    assert dense["params"] / cost["params"] == pytest.approx(8, rel=0.05)
    assert 5 < dense["macs"] / cost["macs"] < 12  # MACs fall roughly with the parameters
    assert small.embedding_dim == 128 and small.head.out_features == 10
    assert costs.parameter_counts(model)["total"] == dense["params"], "the original must be left intact"
    torch.save(small.state_dict(), tmp_path / "c.pt")
    clone = storage.reshape_to_state_dict(build_model("resnet50", 10, 128),
                                             torch.load(tmp_path / "c.pt", weights_only=True)).eval()
    small.eval()
    assert torch.allclose(clone.embed(x), small.embed(x), atol=1e-5)
    with pytest.raises(ValueError, match="unknown channel pruning method"):
        structured.channel_prune(model, "channel_random", 2, x[:1])


def test_numeric_types_and_the_dense_control():
    import numpy as np

    model = pruning.prune(small_net(), "layer_weight", np.int64(4))
    assert costs.compression_ratio(model) == pytest.approx(4, rel=0.01)
    with pytest.raises(ValueError, match=">= 1"):
        pruning.prune(small_net(), "layer_weight", True)
    dense = pruning.prune(small_net(), "global_weight", 1)  # fresh model with zero BatchNorm biases
    assert all(bool(m.all()) for m in masks(dense).values())


def test_frozen_zeros_train_exactly_like_masks(tiny_data):
    torch.manual_seed(0)
    model = build_model("resnet18", tiny_data.split.num_classes, 16)
    frozen = pruning.keep_zeros_frozen(pruning.prune(copy.deepcopy(model), "global_weight", 6))
    masked = pruning.prune(model, "global_weight", 6)
    assert not pruning.is_pruned(frozen)
    config = TrainConfig(epochs=1, batch_size=16, optimizer="sgd", lr=0.05, weight_decay=0.01, max_batches_per_epoch=3)
    results = [fit(m, tiny_data.store, tiny_data.split.train, config, progress=False) for m in (masked, frozen)]
    assert results[0].history["train_loss"].tolist() == results[1].history["train_loss"].tolist()
    pruning.make_permanent(masked)
    for (name, a), b in zip(masked.state_dict().items(), frozen.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between masked and frozen-zero training"
    assert costs.compression_ratio(frozen) == pytest.approx(6, rel=0.01)
