"""Shared fixtures: small generated data sets in the real layouts, built once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ocular_utils.data.synthetic import SyntheticConfig, generate_visob_like

from .fixtures import make_ufpr

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def visob_root(tmp_path_factory) -> Path:
    """The synthetic generator's output: VISOB's layout, 10 subjects, small images."""
    root = tmp_path_factory.mktemp("visob") / "visob"
    return generate_visob_like(root, SyntheticConfig(subjects=10, seed=3, width=60, height=40), progress=False)


@pytest.fixture(scope="session")
def ufpr_root(tmp_path_factory) -> Path:
    """A 20-subject UFPR-Periocular layout with open_world_valopen fold 1 and test pairs."""
    return make_ufpr(tmp_path_factory.mktemp("ufpr") / "ufpr", subjects=20)


@pytest.fixture(scope="session")
def tiny_data(visob_root):
    """Prepared data (split, images, trials) of the VISOB fixture at 32x48."""
    from ocular_utils.data.prepare import prepare_data

    return prepare_data({"root": str(visob_root), "image_size": [32, 48], "val_fraction": 0.2})
