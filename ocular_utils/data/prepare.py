"""The data a run uses, from its settings: generate (synthetic), index, decode, split, build trials.

One :class:`~ocular_utils.data.config.DataConfig` (the profile's ``data`` section, a papermill
parameter as a dict) describes the data set, protocol and image size; :func:`prepare_data` turns it into a
:class:`StudyData`: the split, the decoded images and the test trials.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..core.paths import resolve
from . import load_dataset
from .config import DataConfig
from .images import BatchLoader, ImageStore, build_image_store
from .protocols import Split, build_trials, make_split
from .schema import OcularDataset
from .synthetic import SyntheticConfig, generate_visob_like


@dataclass
class StudyData:
    """Everything a run needs about the data: the index, split, decoded images and test trials."""

    dataset: OcularDataset
    split: Split
    store: ImageStore
    trials: pd.DataFrame
    config: DataConfig
    notes: list[str] = field(default_factory=list)

    @property
    def image_size(self) -> tuple[int, int]:
        """Network input (height, width)."""
        return tuple(self.config.image_size)

    @property
    def synthetic(self) -> bool:
        """True when the images are the generated default, not a real data set."""
        return self.dataset.synthetic

    def training_batch(self, batch_size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """One unaugmented, seeded batch of training images and labels (for gradient-based scores)."""
        loader = BatchLoader(self.store, self.split.train, min(batch_size, len(self.split.train)), seed=seed)
        return next(iter(loader))


def _drop_corrupt(dataset: OcularDataset, store: ImageStore) -> list[str]:
    """Remove images the store could not decode (``on_corrupt='skip'``) from ``dataset``'s index and protocols, in
    place; say which."""
    if store.corrupt.empty:
        return []
    bad = set(store.corrupt["path"])
    dataset.frame = dataset.frame[~dataset.frame["path"].isin(bad)].reset_index(drop=True)
    names = {Path(p).name for p in bad}
    for folds in dataset.protocols.values():
        for entry in folds.values():
            for part in ("train", "val", "test"):
                entry[part] = entry[part][~entry[part]["file"].isin(names)]
            if entry["pairs"] is not None:
                pairs = entry["pairs"]
                entry["pairs"] = pairs[~pairs["probe"].isin(names) & ~pairs["reference"].isin(names)]
    return [f"{len(bad)} corrupt images skipped (on_corrupt='skip'): " + ", ".join(sorted(names)[:5])]


def index_data(config: DataConfig, progress: bool = False) -> OcularDataset:
    """Generate the data set (if synthetic and missing) and index its files; nothing is decoded."""
    root = resolve(config.root)
    if config.synthetic is not None:
        generate_visob_like(root, SyntheticConfig(**config.synthetic), progress=progress)
    return load_dataset(root, config.layout, resolve(config.attributes))


def split_data(dataset: OcularDataset, config: DataConfig) -> Split:
    """The subject-disjoint split of an indexed data set, as ``config`` says."""
    return make_split(dataset, protocol=config.protocol, fold=config.fold, seed=config.seed,
                      test_fraction=config.test_fraction, val_fraction=config.val_fraction,
                      eyes=config.eyes, min_images=config.min_images)


def prepare_data(data: DataConfig | dict | None = None, progress: bool = False) -> StudyData:
    """Generate (if synthetic and missing), index, decode and split the data set ``data`` describes."""
    config = data if isinstance(data, DataConfig) else DataConfig.from_dict(data, "data")
    dataset = index_data(config, progress)
    store = build_image_store(dataset.frame, tuple(config.image_size), cache_dir=resolve(config.cache_dir),
                              workers=config.workers, on_corrupt=config.on_corrupt)
    notes = list(dataset.notes) + _drop_corrupt(dataset, store)
    split = split_data(dataset, config)
    trials = build_trials(split.test, split.pairs, eyes=split.eyes, max_impostors=config.max_impostors,
                          seed=config.seed)
    return StudyData(dataset, split, store, trials, config, notes + split.notes)
