"""Model fixtures: golden checkpoints rebuilt from the recipe (one at a time: 1.2 GB each), random
input frames. (The tiny checkpoint and model are shared: tests/conftest.py.)"""
from __future__ import annotations

import gc

import pytest
import torch

from pipeline import build_model


class _OneSlotModels:
    """Builds golden models on demand and keeps only the most recent (memory stays ~1.5 GB)."""

    def __init__(self, recipe) -> None:
        self.recipe = recipe
        self.key = None
        self.model = None

    def get(self, preset: str, seed: int):
        if self.key != (preset, seed):
            self.model = None
            gc.collect()
            ckpt = self.recipe.make_checkpoint(preset, seed)
            digest = self.recipe.checkpoint_digest(ckpt)
            want = self.recipe.load_manifest()["checkpoints"][f"{preset}/{seed}"]["sha256"]
            assert digest == want, "the recipe rebuilt a different checkpoint: golden cases do not apply"
            self.model = build_model(ckpt)
            self.key = (preset, seed)
        return self.model


@pytest.fixture(scope="session")
def golden_models(recipe):
    slot = _OneSlotModels(recipe)
    yield slot
    slot.model = None


def frames(batch: int, h: int, w: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, h, w, generator=g) * 2 - 1
