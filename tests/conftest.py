"""Shared fixtures: where ../shared lives, devices to test on, per-dtype tolerances."""
from __future__ import annotations

import os

# as cli.py does: torch's OpenMP threads should not spin against the decode/encode threads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GOLDEN = SHARED / "golden"
MEDIA = SHARED / "media"

# Absolute tolerance per dtype for op-level comparisons against a float32/64 reference.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 3e-3}


def _devices() -> list:
    devs = [pytest.param("cpu", id="cpu")]
    devs.append(pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device")))
    return devs


@pytest.fixture(params=_devices())
def device(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """The golden folder (../shared/golden); tests that use it skip when it is absent."""
    if not (GOLDEN / "recipe.py").exists():
        pytest.skip("../shared/golden is not beside the checkout")
    return GOLDEN


@pytest.fixture(scope="session")
def recipe(golden_dir):
    """The golden recipe module (imported from ../shared/golden)."""
    if str(golden_dir) not in sys.path:
        sys.path.insert(0, str(golden_dir))
    import recipe as _recipe

    return _recipe


@pytest.fixture(scope="session")
def golden_modules(recipe) -> dict:
    return recipe.load_modules()


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """Real face clips and photos (../shared/media); tests skip when it is absent."""
    if not MEDIA.is_dir():
        pytest.skip("../shared/media is not beside the checkout")
    return MEDIA
