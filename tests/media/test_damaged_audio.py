"""Outputs never inherit damage: a source whose audio or subtitle packets are damaged gives an output
that decodes without a single error (PyAV, FFmpeg's own log, and ``ffmpeg -v error`` when it is
installed), the audio re-encoded with silence where packets were lost, in sync with the video."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import make_random_checkpoint, save_checkpoint
from pipeline.stages.video_in import VideoInConfig, read
from pipeline.stages.video_out import VideoOutConfig, write
from tests.clips import audio_span, decode_problems, garble, make_clip, truncate

REPO = Path(__file__).resolve().parents[2]
RATE = 48000
AAC_FRAME = 1024


def damage_packets(src: Path, dst: Path, kind: str, which: set[int], seed: int = 0) -> Path:
    """Copy ``src`` to ``dst`` with the payload of the ``which``-th packets (0-based, in stream order)
    of its first ``kind`` stream replaced by noise; everything else, timing included, as it was."""
    rng = np.random.default_rng(seed)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        target = next(s for s in inp.streams if s.type == kind).index
        copies = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio",
                                                                                             "subtitle")}
        seen = 0
        for packet in inp.demux():
            index = packet.stream.index
            if packet.size == 0 or index not in copies:
                continue
            if index == target:
                if seen in which:
                    payload = bytes(packet)[:1] + rng.integers(0, 256, packet.size - 1, np.uint8).tobytes()
                    if kind == "subtitle":
                        payload = b"\xff\xfe\xfd broken " + payload
                    bad = av.Packet(payload)
                    bad.pts, bad.dts, bad.duration, bad.time_base = packet.pts, packet.dts, packet.duration, \
                        packet.time_base
                    packet = bad
                seen += 1
            packet.stream = copies[index]
            out.mux(packet)
    return dst


def convert_through(src: Path, dst: Path, codec: str = "h264", **trim: float) -> tuple[Path, list[str]]:
    """Decode ``src`` and write its frames to ``dst`` with its audio carried over, as convert does."""
    notes: list[str] = []
    frames = read(src, VideoInConfig(**trim))
    with frames:
        write(frames, dst, VideoOutConfig(codec=codec, preset="ultrafast"), frames.info, audio_from=src,
              notes=notes, **trim)
    return dst, notes


def audio_samples(path: Path) -> tuple[np.ndarray, float]:
    """The first audio stream decoded to mono float [n], and the time of its first sample."""
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    start = float(frames[0].pts * frames[0].time_base)
    return np.concatenate([f.to_ndarray().reshape(len(f.layout.channels), -1)[0] for f in frames]), start


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x.astype(np.float64))))) if x.size else 0.0


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clean") / "clean.mp4", frames=30, audio=True)


def test_damaged_aac_is_reencoded_with_silence_in_sync(tmp_path, clean):
    damaged = {3, 10, 11, 40, 90}
    bad = damage_packets(clean, tmp_path / "bad.mp4", "audio", damaged)
    assert decode_problems(bad), "the damage helper must really damage the audio"
    out, notes = convert_through(bad, tmp_path / "out.mp4")

    assert decode_problems(out) == []
    assert len(notes) == 1 and "re-encoded to aac" in notes[0] and f"{len(damaged)} of" in notes[0]
    assert "silence" in notes[0]
    # Same span as the clean source's audio, to within one AAC frame: nothing shifted, nothing lost.
    (c0, c1), (o0, o1) = audio_span(clean), audio_span(out)
    assert abs(o0 - c0) <= AAC_FRAME / RATE and abs(o1 - c1) <= AAC_FRAME / RATE
    # Where a packet was lost there is silence; around it the tone goes on, at the same place.
    ref, ref_start = audio_samples(clean)
    got, got_start = audio_samples(out)
    assert got_start == pytest.approx(ref_start) and len(got) == len(ref)
    tone = rms(ref[RATE // 10: RATE // 5])
    for k in (3, 10, 11, 40, 90):     # packet k (the first one is priming, at pts -1024) decodes to frame k-1
        centre = (k - 1) * AAC_FRAME + AAC_FRAME // 2
        assert rms(got[centre - 256: centre + 256]) < 0.1 * tone, k
    middle = slice(60 * AAC_FRAME, 80 * AAC_FRAME)       # far from any damage: the tone itself
    assert rms(got[middle]) == pytest.approx(tone, rel=0.2)
    a, b = ref[middle], got[middle]
    assert float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b))) > 0.9    # in phase: still in sync


def test_damaged_first_packets_keep_the_start(tmp_path, clean):
    bad = damage_packets(clean, tmp_path / "bad.mp4", "audio", {0, 1, 2})
    out, notes = convert_through(bad, tmp_path / "out.mp4")
    assert decode_problems(out) == [] and notes
    (c0, c1), (o0, o1) = audio_span(clean), audio_span(out)
    assert abs(o0 - c0) <= AAC_FRAME / RATE and abs(o1 - c1) <= AAC_FRAME / RATE


def test_damaged_audio_cut_to_a_trim(tmp_path, clean):
    bad = damage_packets(clean, tmp_path / "bad.mp4", "audio", set(range(20, 120, 9)))
    out, notes = convert_through(bad, tmp_path / "out.mp4", start=0.5, end=2.0)
    assert decode_problems(out) == [] and notes
    first, end = audio_span(out)
    assert first <= 1e-6 and abs(end - 1.5) <= AAC_FRAME / RATE


@pytest.mark.parametrize("ext", [".mkv", ".webm", ".mov"])
def test_damaged_audio_into_other_containers(tmp_path, clean, ext):
    bad = damage_packets(clean, tmp_path / "bad.mp4", "audio", {5, 6, 50})
    out, notes = convert_through(bad, tmp_path / f"out{ext}", codec="vp9" if ext == ".webm" else "h264")
    assert decode_problems(out) == [] and len(notes) == 1
    assert abs(audio_span(out)[1] - audio_span(clean)[1]) <= 2 * AAC_FRAME / RATE


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_broken_off_and_garbled_files_give_clean_outputs(tmp_path, damage):
    src = make_clip(tmp_path / "src.mkv", frames=30, audio=True, options={"g": "5"})
    if damage == "truncated":
        truncate(src, 0.6)
    else:
        for at, seed in ((0.3, 1), (0.5, 2), (0.7, 3)):
            garble(src, at, 300, seed)
    assert decode_problems(src)
    out, _ = convert_through(src, tmp_path / "out.mp4")
    assert decode_problems(out) == []


def test_clean_audio_is_still_copied_packet_for_packet(tmp_path, clean):
    out, notes = convert_through(clean, tmp_path / "out.mp4")
    assert notes == [] and decode_problems(out) == []

    def payloads(path: Path) -> list[bytes]:
        with av.open(str(path)) as c:
            return [bytes(p) for p in c.demux(audio=0) if p.size]

    assert payloads(out) == payloads(clean)


def test_damaged_subtitle_packets_are_dropped_the_rest_kept(tmp_path):
    src = make_clip(tmp_path / "subs.mkv", frames=30, audio=True, subtitles=True)
    with av.open(str(src)) as c:
        cues = sum(1 for p in c.demux(subtitles=0) if p.size)
    assert cues >= 1
    bad = damage_packets(src, tmp_path / "bad.mkv", "subtitle", {0})
    out, notes = convert_through(bad, tmp_path / "out.mkv")
    assert decode_problems(out) == []
    assert len(notes) == 1 and "subtitle packets dropped" in notes[0]
    with av.open(str(out)) as c:
        assert len(c.streams.subtitles) == 1
        stream = c.streams.subtitles[0]
        kept = [p for p in c.demux(stream) if p.size]
        for p in kept:
            stream.decode(p)                 # raises on a damaged one
    assert len(kept) == cues - 1


def test_cli_warns_and_reports_the_repair_in_json(tmp_path, clean):
    tiny = save_checkpoint(make_random_checkpoint("tiny", 3), tmp_path / "tiny.pt")
    bad = damage_packets(clean, tmp_path / "bad.mp4", "audio", {7, 8, 30})
    out = tmp_path / "out.mp4"
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "convert", str(bad), "--model", str(tiny),
                           "-o", str(out), "--no-face", "pass", "--progress", "json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "damaged input" in proc.stderr and "audio re-encoded" in proc.stderr
    done = json.loads(proc.stdout.splitlines()[-1])
    assert done["event"] == "done" and "audio re-encoded" in done["damage"]
    assert len(done["repairs"]) == 1 and "3 of" in done["repairs"][0]
    assert decode_problems(out) == []
