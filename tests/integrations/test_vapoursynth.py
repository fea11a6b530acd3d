"""The VapourSynth filter in the real engine (the `vapoursynth` wheel from PyPI, in the host made by
scripts/editor_hosts.py): the same frames as `facestyle convert`, linear or in random order, in
process and through vspipe; YUV clips keep their format."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pipeline import make_random_checkpoint, save_checkpoint
from tests.test_cli_convert import face_clip

REPO = Path(__file__).resolve().parents[2]


def vs_python() -> str:
    python = os.environ.get("FACESTYLE_VAPOURSYNTH_PYTHON") or str(REPO / ".hosts" / "vapoursynth" / "bin" / "python")
    reason = REPO / ".hosts" / "vapoursynth.unavailable"
    why = f": {reason.read_text().strip()}" if reason.is_file() else " (run: python scripts/editor_hosts.py)"
    if not Path(python).exists():
        pytest.skip(f"no VapourSynth host at {python}{why}")
    probe = subprocess.run([python, "-c", "import vapoursynth, pipeline"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the VapourSynth host cannot import vapoursynth and facestyle: {probe.stderr.strip()[-300:]}")
    return python


@pytest.mark.parametrize("options", [
    {"style_code": "smoothed", "smooth_window": 2},
    {"style_code": "first-frame"},
], ids=["smoothed", "first-frame"])
def test_filter_gives_the_frames_of_convert_in_any_order(tmp_path, media_dir, options):
    python = vs_python()
    clip = face_clip(media_dir / "ILip77SbmOE.png", tmp_path / "face.mp4", frames=8, audio=False)
    model = save_checkpoint(make_random_checkpoint("tiny", 3), tmp_path / "tiny.pt")
    proc = subprocess.run([python, str(REPO / "tests" / "integrations" / "vs_driver.py"), str(clip), str(model),
                           str(tmp_path), json.dumps(options)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["clip"] == {"frames": 8, "fps": [10, 1], "size": [360, 360], "format": "RGB24"}
    assert report["converted_frames"] == 8
    assert report["changed_vs_input"] > 50                        # the faces were stylized
    assert report["convert_vs_linear"] == 0                       # bit-exact: the frames of convert
    assert report["random_vs_linear"] == 0                        # seeking gives the same frames
    assert report["vspipe_error"] is None and report["vspipe_vs_linear"] == 0
    assert report["yuv"]["format"] == "YUV420P8" and report["yuv"]["frames"] == 8
    assert report["yuv"]["mean_luma_change"] > 1.0
