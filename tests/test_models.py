"""Backbones by name, the embedding/head interface, and ImageNet initialization offline."""
import urllib.error

import pytest
import torch
import torchvision

from ocular_utils.models.networks import build_model, deployed_network, load_pretrained_weights

STUDENTS = ["mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x1_0", "resnet18"]


@pytest.mark.parametrize("name", ["resnet50"] + STUDENTS)
def test_every_backbone_builds_embeds_and_exports_its_state(name, tmp_path):
    model = build_model(name, num_classes=7, embedding_dim=16).eval()
    x = torch.randn(2, 3, 32, 48)
    logits, embedding = model(x, return_embedding=True)
    assert logits.shape == (2, 7) and embedding.shape == (2, 16)
    assert torch.allclose(model.embed(x), embedding) and torch.allclose(deployed_network(model)(x), embedding)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    clone = build_model(name, num_classes=7, embedding_dim=16).eval()
    clone.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert torch.equal(clone.embed(x), embedding)


def test_deployed_network_excludes_the_head():
    model = build_model("resnet18", num_classes=5, embedding_dim=8)
    names = [n for n, _ in deployed_network(model).named_parameters()]
    assert not any(n.startswith("head") for n in names) and any(n.startswith("embedding") for n in names)


def test_bad_names_and_sizes():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model("vgg99")
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet18", num_classes=1)
    with pytest.raises(ValueError, match="unknown head"):
        build_model("resnet18", 3, head="arcface")


def test_imagenet_offline_gives_one_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="could not be downloaded.*pretrained='/path/to/"):
        build_model("resnet18", 3, pretrained="imagenet")


def test_local_weights_file(tmp_path):
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    model = build_model("resnet18", 3, pretrained=str(tmp_path / "r18.pth"))
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model("resnet18", 3, pretrained=str(tmp_path / "missing.pth"))
    torch.save({"bogus": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="do not fit resnet18"):
        load_pretrained_weights(reference, "resnet18", str(tmp_path / "bad.pth"))
