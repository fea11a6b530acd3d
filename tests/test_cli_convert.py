"""`facestyle convert` as a user runs it, on real faces from ../shared/media and on bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import pytest

from pipeline import make_random_checkpoint, save_checkpoint
from tests.clips import decode_problems, face_clip

REPO = Path(__file__).resolve().parents[1]


def run(*args, timeout=600):
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def error_line(proc, code):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("facestyle: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_checkpoint(make_random_checkpoint("tiny", 3), tmp_path_factory.mktemp("m") / "tiny.pt")


def streams(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        return n, (v.width, v.height), len(c.streams.audio)


def test_convert_real_face_clip_full_and_crop(tmp_path, tiny, media_dir):
    src = face_clip(media_dir / "ILip77SbmOE.png", tmp_path / "face.mp4")
    out = tmp_path / "full.mp4"
    proc = run("convert", src, "--model", tiny, "-o", out, "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert events[-1]["frames_out"] == 4 and events[-1]["frames_with_face"] == 4
    assert streams(out) == (4, streams(src)[1], 1)
    crop = tmp_path / "crop.mp4"
    proc = run("convert", src, "--model", tiny, "-o", crop, "--output-mode", "crop", "-q")
    assert proc.returncode == 0, proc.stderr
    n, (w, h), audio = streams(crop)
    assert (n, audio) == (4, 1) and w % 32 == 0 and h % 32 == 0 and w > streams(src)[1][0]


def test_hardware_decoding_that_cannot_start_falls_back_to_software(tmp_path, tiny, media_dir):
    src = face_clip(media_dir / "ILip77SbmOE.png", tmp_path / "face.mp4", frames=3)
    out = tmp_path / "out.mp4"
    proc = run("convert", src, "--model", tiny, "-o", out, "--hwaccel", "nosuchdevice", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "hwaccel 'nosuchdevice' is not available here; decoding in software" in proc.stderr
    assert streams(out) == (3, streams(src)[1], 1)


def test_convert_photo_and_folder(tmp_path, tiny, media_dir):
    out = tmp_path / "portrait.png"
    proc = run("convert", media_dir / "540.jpg", "--model", tiny, "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(out)).shape == cv2.imread(str(media_dir / "540.jpg")).shape
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes((media_dir / "ILip77SbmOE.png").read_bytes())
    (folder / "broken.mp4").write_text("not a video")
    proc = run("convert", folder, "--model", tiny, "-o", tmp_path / "out")
    assert proc.returncode == 1
    assert "1 converted, 1 failed" in proc.stdout and "broken.mp4" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_tiny.png"]


def test_bad_inputs_one_line_errors(tmp_path, tiny):
    assert "not found" in error_line(run("convert", tmp_path / "nope.mp4", "--model", tiny), 4)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert "empty" in error_line(run("convert", empty, "--model", tiny), 4)
    text = tmp_path / "notes.mp4"
    text.write_text("hello\n" * 100)
    error_line(run("convert", text, "--model", tiny), 4)
    assert "checkpoint" in error_line(run("convert", text, "--model", text), 3)
    assert "fp16" in error_line(run("convert", text, "--model", tiny, "--precision", "fp16", "--device", "cpu"), 2)
    assert list(tmp_path.iterdir()) == [empty, text] or sorted(tmp_path.iterdir()) == sorted([empty, text])


def test_unwritable_output_and_existing_output(tmp_path, tiny, media_dir):
    photo = media_dir / "540.jpg"
    assert "does not exist" in error_line(run("convert", photo, "--model", tiny, "-o", tmp_path / "x" / "o.png"), 6)
    existing = tmp_path / "o.png"
    existing.write_bytes(b"old")
    assert "exists" in error_line(run("convert", photo, "--model", tiny, "-o", existing), 6)
    assert existing.read_bytes() == b"old"


def test_unknown_model_name_offline(tmp_path, media_dir, monkeypatch):
    env_dir = tmp_path / "cache"
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "convert", str(media_dir / "540.jpg"), "--model",
                           "pixar"], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "FACESTYLE_MODEL_DIR": str(env_dir),
                               "FACESTYLE_MODEL_URL": "http://127.0.0.1:9"})
    line = error_line(proc, 7)
    assert "styleganex_toonify_pixar.pt" in line and str(env_dir) in line


def test_config_file_defaults_and_command_line_wins(tmp_path, tiny, media_dir):
    cfg = tmp_path / "facestyle.toml"
    cfg.write_text(f'[convert]\nmodel = "{tiny}"\noutput-mode = "crop"\n')
    out = tmp_path / "o.png"
    proc = run("convert", media_dir / "540.jpg", "-o", out, "--config", cfg, "-q")
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(out)).shape[0] % 32 == 0                   # crop mode came from the file
    out2 = tmp_path / "o2.png"
    proc = run("convert", media_dir / "540.jpg", "-o", out2, "--config", cfg, "--output-mode", "full", "-q")
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(out2)).shape == cv2.imread(str(media_dir / "540.jpg")).shape
    cfg.write_text("[convert]\nbogus = 1\n")
    proc = run("convert", media_dir / "540.jpg", "--config", cfg)
    assert proc.returncode == 2 and "unknown option(s) bogus" in proc.stderr


def test_audio_only_and_corrupt_tail(tmp_path, tiny, media_dir):
    from tests.clips import make_audio_only

    audio = make_audio_only(tmp_path / "voice.m4a")
    assert "video" in error_line(run("convert", audio, "--model", tiny), 4)
    from tests.clips import make_clip, truncate

    src = truncate(make_clip(tmp_path / "t.mkv", frames=30, options={"g": "5"}), 0.6)
    out = tmp_path / "out.mp4"
    proc = run("convert", src, "--model", tiny, "-o", out, "-q", "--no-face", "pass")
    assert proc.returncode == 0, proc.stderr
    assert "damaged input" in proc.stderr and "truncated" in proc.stderr and out.exists()
    assert 1 <= streams(out)[0] < 30
    assert decode_problems(out) == []       # the output never inherits the damage
