"""Post-training int8: calibration on training images only, full delegation, EER through the runtimes, routes."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ocular_utils.compression.routes import PARENTS, ROUTES, Route, register_route
from ocular_utils.core.paths import project_root
from ocular_utils.deployment import export, quantize
from ocular_utils.deployment.quantize import CalibrationError, DelegationError, QuantizationConfig
from ocular_utils.runner.plan import Planner
from ocular_utils.runner.profiles import load_profile
from ocular_utils.verification.scoring import embed_images, evaluate_embeddings_on_test

needs_executorch = pytest.mark.skipif(not export.executorch_available(), reason="ExecuTorch is not installed")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embedding = nn.Linear(16, 8)

    def forward(self, x):
        return self.embedding(self.features(x))


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return Tiny().eval()


def test_calibration_uses_training_images_only(tiny_data):
    split = tiny_data.split
    frame = quantize.calibration_frame(split, 16, seed=0)
    assert len(frame) == 16 and frame["path"].isin(split.train["path"]).all()
    assert frame.equals(quantize.calibration_frame(split, 16, seed=0))  # seeded
    for part in ("val", "test"):
        leaked = pd.concat([frame.iloc[:-1], getattr(split, part).iloc[:1]])
        with pytest.raises(CalibrationError, match=f"{part} subjects"):
            quantize.check_calibration(leaked, split)
    with pytest.raises(CalibrationError, match="has only"):
        quantize.calibration_frame(split, len(split.train) + 1)


def test_settings_refuse_unknown_routes_and_empty_calibration():
    with pytest.raises(ValueError, match="unknown compression route 'nope'"):
        QuantizationConfig(routes=["nope"])
    with pytest.raises(ValueError, match="at least 1"):
        QuantizationConfig(calibration_images=0)
    with pytest.raises(ValueError, match="unknown parents"):
        register_route(Route("x", ("int8",), "teacher"))
    assert {route.parents for route in ROUTES.values()} <= set(PARENTS)


def test_delegation_check_names_an_undelegated_quantized_operator():
    def node(name):
        return SimpleNamespace(op="call_function", target=SimpleNamespace(__name__=name))

    graph = SimpleNamespace(graph=SimpleNamespace(nodes=[
        node("executorch_call_delegate"), node("getitem"), node("dim_order_ops._to_dim_order_copy.default"),
        node("quantized_decomposed.dequantize_per_tensor.default")]))
    with pytest.raises(DelegationError, match="dequantize_per_tensor"):
        quantize.check_delegation(graph)
    graph.graph.nodes.pop()
    assert quantize.check_delegation(graph) == ["dim_order_ops._to_dim_order_copy.default"]


@needs_executorch
def test_int8_program_is_delegated_and_scored_through_the_runtime(tiny_net, tiny_data, tmp_path):
    store, test = tiny_data.store, tiny_data.split.test
    frame = quantize.calibration_frame(tiny_data.split, 32)
    batches = quantize.calibration_batches(store, frame, 16)
    path = tmp_path / "int8.pte"
    outside = quantize.lower_executorch(quantize.quantize_pt2e(tiny_net, batches), path, (32, 48))
    assert outside == []  # every operator (quantized or not) runs in XNNPACK
    fp32 = export.export_executorch(tiny_net, tmp_path / "fp32.pte", (32, 48))
    assert path.stat().st_size < fp32.stat().st_size
    through_runtime = quantize.embed_executorch(path, store, test)  # images arrive channels-last: copied contiguous
    eager = embed_images(tiny_net, store, test)
    assert quantize.min_cosine(through_runtime, eager) > 0.95
    int8, reference = (evaluate_embeddings_on_test(e, tiny_data, 0) for e in (through_runtime, eager))
    assert int8.trial_list == reference.trial_list
    assert abs(int8.report["eer"] - reference.report["eer"]) < 0.1
    np.testing.assert_allclose(quantize.embed_executorch(path, store, test), through_runtime)  # deterministic


def test_onnx_int8_is_scored_through_onnx_runtime(tiny_net, tiny_data, tmp_path):
    store, test = tiny_data.store, tiny_data.split.test
    batches = quantize.calibration_batches(store, quantize.calibration_frame(tiny_data.split, 32), 16)
    fp32 = export.export_onnx(tiny_net, tmp_path / "fp32.onnx", (32, 48))
    int8 = quantize.quantize_onnx(fp32, tmp_path / "int8.onnx", batches)
    assert not (tmp_path / "int8.pre.onnx").exists()
    assert quantize.min_cosine(quantize.embed_onnx(int8, store, test), embed_images(tiny_net, store, test)) > 0.95


def test_sparse_int8_storage_shrinks_with_zeros(tiny_net, tmp_path):
    dense = quantize.sparse_int8_bytes(tiny_net, tmp_path / "dense.pt")
    pruned = Tiny()
    pruned.load_state_dict(tiny_net.state_dict())
    with torch.no_grad():
        for module in pruned.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight[module.weight.abs() < module.weight.abs().median()] = 0
    assert quantize.sparse_int8_bytes(pruned, tmp_path / "sparse.pt") < dense


def test_every_route_becomes_units_with_its_parents(tmp_path):
    profile = load_profile("default")
    profile.pruning.lr_sweep = []
    planner = Planner(profile, project_root(), str(tmp_path / "results"))
    units = planner.build()
    quantized = [u for u in units.values() if u.kind == "quantize"]
    assert {u.params["route"] for u in quantized} == set(ROUTES)
    for unit in quantized:
        parent = units[unit.deps[0]]
        assert unit.params["parent_dir"] == str(parent.run_dir)
    combined = [u for u in quantized if u.params["route"] == "student+channel+int8"]
    assert combined and all(units[units[u.deps[0]].deps[0]].kind == "distill" for u in combined)
    assert all(u.params["quantization"] == QuantizationConfig().recipe() for u in quantized)
    assert set(units["latency"].params["quantized_runs"]) == {str(u.run_dir) for u in quantized}
