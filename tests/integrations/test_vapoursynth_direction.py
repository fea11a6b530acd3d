"""--direction through the VapourSynth filter (in the real engine): ``direction="FILE:S"`` as a keyword
argument gives the frames ``facestyle convert --direction FILE:S`` gives, in any order."""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np

from pipeline import make_random_checkpoint, save_checkpoint
from tests.integrations.test_vapoursynth import REPO, vs_python
from tests.test_cli_convert import face_clip


def test_the_filter_takes_a_direction(tmp_path, media_dir):
    python = vs_python()
    clip = face_clip(media_dir / "ILip77SbmOE.png", tmp_path / "face.mp4", frames=8, audio=False)
    model = save_checkpoint(make_random_checkpoint("tiny", 3), tmp_path / "tiny.pt")
    direction = tmp_path / "d.npy"
    np.save(direction, np.random.default_rng(0).normal(size=32).astype(np.float32))
    options = {"style_code": "first-frame", "direction": f"{direction}:0.7"}
    proc = subprocess.run([python, str(REPO / "tests" / "integrations" / "vs_driver.py"), str(clip), str(model),
                           str(tmp_path), json.dumps(options)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["converted_frames"] == 8 and report["changed_vs_input"] > 50
    assert report["convert_vs_linear"] == 0 and report["random_vs_linear"] == 0
