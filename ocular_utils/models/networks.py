"""Verification models: a torchvision backbone, an embedding layer and a training-only head.

``model(x)`` returns identity logits (for training); ``model.embed(x)`` returns the embedding
used for verification. The deployed network is ``backbone + embedding`` (:func:`deployed_parts`,
:func:`deployed_network`: its one definition); the head exists only to train on the training
identities.
"""
from __future__ import annotations

import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from ..core.config import Settings

# Backbones the study uses by name, and the attribute that holds each one's ImageNet classifier.
CLASSIFIER_ATTRIBUTE = {
    "resnet18": "fc",
    "resnet34": "fc",
    "resnet50": "fc",
    "mobilenet_v2": "classifier",
    "mobilenet_v3_small": "classifier",
    "mobilenet_v3_large": "classifier",
    "shufflenet_v2_x0_5": "fc",
    "shufflenet_v2_x1_0": "fc",
    "efficientnet_b0": "classifier",
    "densenet121": "classifier",
}
HEADS = ("linear", "cosine")


@dataclass
class ModelConfig(Settings):
    """A verifier's architecture: backbone, embedding width, head, initialization (the ``base`` section's model)."""

    backbone: str = "resnet50"
    embedding_dim: int = 128
    head: str = "linear"
    pretrained: str | None = None  # "imagenet" or a weights file; None trains from scratch

    def __post_init__(self):
        if self.backbone not in CLASSIFIER_ATTRIBUTE:
            raise ValueError(f"base.backbone {self.backbone!r} is not one of {sorted(CLASSIFIER_ATTRIBUTE)}")
        if self.head not in HEADS:
            raise ValueError(f"base.head {self.head!r} is not one of {HEADS}")


class CosineHead(nn.Module):
    """Normalized-softmax head: logits are ``scale * cos(embedding, class centre)``."""

    def __init__(self, in_features: int, out_features: int, scale: float = 16.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.normal_(self.weight, std=0.01)
        self.scale = scale
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.linear(nn.functional.normalize(x, dim=1),
                                                 nn.functional.normalize(self.weight, dim=1))


class OcularNet(nn.Module):
    """Backbone -> embedding (Linear + BatchNorm1d) -> training-only identity head."""

    def __init__(self, backbone: nn.Module, feature_dim: int, embedding_dim: int, num_classes: int,
                 head: str = ModelConfig.head, backbone_name: str = "custom"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
        self.backbone = backbone
        self.embedding = nn.Sequential(nn.Linear(feature_dim, embedding_dim), nn.BatchNorm1d(embedding_dim))
        linear = head == "linear"
        self.head = nn.Linear(embedding_dim, num_classes) if linear else CosineHead(embedding_dim, num_classes)
        self.backbone_name = backbone_name
        self.embedding_dim = embedding_dim

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The verification embedding (not normalized; scores use cosine similarity)."""
        return self.embedding(self.backbone(x))

    def forward(self, x: torch.Tensor, return_embedding: bool = False):
        """Identity logits; with ``return_embedding`` also the embedding (one pass, DDP-friendly)."""
        embedding = self.embed(x)
        logits = self.head(embedding)
        return (logits, embedding) if return_embedding else logits


class EmbeddingNetwork(nn.Module):
    """The deployed part of an :class:`OcularNet`: ``forward(x)`` is the embedding."""

    def __init__(self, model: OcularNet):
        super().__init__()
        self.backbone = model.backbone
        self.embedding = model.embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.backbone(x))


def deployed_parts(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(attribute, module)`` of the deployed network: backbone and embedding of an :class:`OcularNet`.

    Any other module counts as deployed whole (``[("", model)]``), e.g. an exported embedding network.
    """
    if hasattr(model, "backbone") and hasattr(model, "embedding"):
        return [("backbone", model.backbone), ("embedding", model.embedding)]
    return [("", model)]


def deployed_network(model: OcularNet) -> EmbeddingNetwork:
    """The embedding path of ``model`` (shares its modules; what a phone would run)."""
    return EmbeddingNetwork(model)


def build_backbone(name: str) -> tuple[nn.Module, int]:
    """A torchvision backbone without its ImageNet classifier, and its feature dimension."""
    if name not in CLASSIFIER_ATTRIBUTE:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(CLASSIFIER_ATTRIBUTE)}")
    # Zero-initialized residual branches (Goyal et al., 2017) make deep ResNets trainable from scratch in few epochs.
    extra = {"zero_init_residual": True} if name.startswith("resnet") else {}
    network = torchvision.models.get_model(name, weights=None, **extra)
    setattr(network, CLASSIFIER_ATTRIBUTE[name], nn.Identity())
    network.eval()
    with torch.no_grad():
        feature_dim = network(torch.zeros(1, 3, 64, 64)).shape[1]
    network.train()
    return network, int(feature_dim)


def load_pretrained_weights(backbone: nn.Module, name: str, pretrained: str) -> None:
    """Initialize ``backbone`` from pretrained weights: ``'imagenet'`` (torchvision's, downloaded or cached) or any
    weights file of the same architecture (a path)."""
    if pretrained == "imagenet":
        weights = torchvision.models.get_model_weights(name).DEFAULT
        try:
            state = weights.get_state_dict(progress=False, check_hash=True)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            raise RuntimeError(
                f"ImageNet weights for {name} ({weights.url}) could not be downloaded: {error}. Offline, download the "
                f"file elsewhere and pass its path as pretrained='/path/to/{Path(weights.url).name}'"
            ) from None
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file {path} does not exist (expected a torchvision "
                                    f"state dict for {name}, or pretrained='imagenet')")
        state = torch.load(path, map_location="cpu", weights_only=True)
    classifier = CLASSIFIER_ATTRIBUTE[name]
    state = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weights do not fit {name}: missing {missing[:5]}, unexpected {unexpected[:5]}")


def build_model(backbone: str = ModelConfig.backbone, num_classes: int = 2,
                embedding_dim: int = ModelConfig.embedding_dim, head: str = ModelConfig.head,
                pretrained: str | None = None) -> OcularNet:
    """Build an :class:`OcularNet` from a torchvision backbone name (optionally ImageNet-initialized)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 (got {num_classes})")
    network, feature_dim = build_backbone(backbone)
    if pretrained:
        load_pretrained_weights(network, backbone, pretrained)
    return OcularNet(network, feature_dim, embedding_dim, num_classes, head=head, backbone_name=backbone)
