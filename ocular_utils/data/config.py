"""The ``data`` section of a profile: the one copy of every data default (loaders and protocols reuse them)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.config import Settings
from .synthetic import SyntheticConfig


@dataclass
class DataConfig(Settings):
    """The ``data`` section: where the images are, how they are split, and the network's input size."""

    root: str = "data/generated/default"
    layout: str = "auto"
    synthetic: dict | None = None  # SyntheticConfig fields: generate the data set at ``root`` first
    protocol: str = "subject"
    fold: int = 1
    seed: int = 0
    test_fraction: float = 0.4
    val_fraction: float = 0.15
    eyes: str = "separate"
    min_images: int = 2
    image_size: list = field(default_factory=lambda: [32, 48])
    attributes: str | None = None  # subject,attribute,value CSV (default: <root>/subject_attributes.csv if present)
    cache_dir: str | None = None
    on_corrupt: str = "error"
    workers: int = 0
    max_impostors: int | None = 500_000
    validation_max_impostors: int = 200_000

    def __post_init__(self):
        if self.synthetic is not None:
            SyntheticConfig(**self.synthetic)  # unknown or bad generator settings fail here, by name
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ValueError(f"data.image_size must be [height, width], each at least 16 (got {self.image_size})")
