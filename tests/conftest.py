"""Shared fixtures: where ../shared lives (media, golden), devices to test on, per-dtype tolerances, the
tiny random checkpoint and model, a real face clip."""
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


@pytest.fixture(scope="session")
def tiny_ckpt_path(tmp_path_factory) -> Path:
    """A random checkpoint of the ``tiny`` preset (seed 7) on disk."""
    from pipeline import make_random_checkpoint, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(make_random_checkpoint("tiny", seed=7), path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_ckpt_path):
    """The tiny checkpoint loaded (fp32, CPU); tests must not change it."""
    from pipeline import load_model

    return load_model(tiny_ckpt_path)


@pytest.fixture(scope="session")
def face_photo(media_dir) -> Path:
    """A real photo with one face (../shared/media)."""
    return media_dir / "ILip77SbmOE.png"


@pytest.fixture(scope="session")
def face_clip_path(face_photo, tmp_path_factory) -> Path:
    """4 frames (10/s) of the real face photo drifting right 2 px a frame, H.264 with a mono AAC tone."""
    from tests.clips import face_clip

    return face_clip(face_photo, tmp_path_factory.mktemp("clips") / "face.mp4", frames=4)
