"""``--ray`` renders the same frames as a plain ``facestyle convert``: chunks of about a second (many
seams) on a simulated cluster of two one-GPU nodes, the progress moving per frame; a clip of one chunk
converted whole; a node lost mid-run; the driver killed and the command run again (only the missing
chunks render); a folder over two workers."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.cluster import RayConfig, convert_on_ray
from pipeline.options import ConvertOptions
from pipeline.progress import JsonProgress
from tests.clips import face_clip

REPO = Path(__file__).resolve().parents[2]
FRAMES = 40                  # 4 s at 10 frames/s
PLAIN_CACHE: dict = {}


@pytest.fixture(scope="module")
def clip(face_photo, tmp_path_factory) -> Path:
    return face_clip(face_photo, tmp_path_factory.mktemp("ray_clips") / "face.mp4", frames=FRAMES)


def options(model: Path, **changes) -> ConvertOptions:
    """ffv1, batches of one, one inference thread (CPU sums depend on the thread count)."""
    return ConvertOptions(model=str(model), codec="ffv1", batch_size=1, threads=1, **changes)


def plain(src: Path, opts: ConvertOptions, folder: Path) -> Path:
    """The output of a plain ``facestyle convert`` with ``opts`` (cached per clip and options)."""
    key = (src, opts)
    if key not in PLAIN_CACHE:
        out = folder / f"plain_{len(PLAIN_CACHE)}.mkv"
        argv = [sys.executable, str(REPO / "cli.py"), "convert", str(src), "-o", str(out), "--progress", "none"]
        for name, value in opts.as_dict(changed_only=True).items():
            flag = "--" + name.replace("_", "-")
            argv += [flag] if value is True else [flag, str(value)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        PLAIN_CACHE[key] = out
    return PLAIN_CACHE[key]


def frames(path: Path) -> list[tuple[int, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def json_events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def assert_progress_per_frame(events: list[dict], result) -> None:
    """The bar reached the frames written, moving more than once per chunk (frames as they render)."""
    steps = [e["frame"] for e in events if e["event"] == "progress"]
    assert steps == sorted(steps) and steps[-1] == result.frames_out
    assert len(steps) > result.chunks["rendered"]
    assert events[-1]["event"] == "done" and events[-1]["chunks"] == result.chunks


def assert_same(a: Path, b: Path) -> None:
    fa, fb = frames(a), frames(b)
    assert [p for p, _ in fa] == [p for p, _ in fb]                       # timestamps
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(fa, fb, strict=True))
    assert audio_packets(a) == audio_packets(b) and audio_packets(b)      # audio kept, once


@pytest.mark.parametrize("changes", [{}, {"style_code": "first-frame"}, {"start": 0.55, "end": 3.25},
                                     {"style_code": "first-frame", "start": 1.05}],
                         ids=["smoothed", "first-frame", "smoothed-start-end", "first-frame-start"])
def test_ray_frames_equal_plain_convert(cluster, clip, tiny_ckpt_path, tmp_path, changes):
    opts = options(tiny_ckpt_path, **changes)
    out, stream = tmp_path / "ray.mkv", io.StringIO()
    [result] = convert_on_ray([(clip, out)], opts, RayConfig(cluster[0].address, chunk_seconds=1.0),
                              JsonProgress(stream, interval=0))
    assert result.ok, result.error
    assert result.chunks["total"] >= 2 and result.chunks["rendered"] == result.chunks["total"]
    assert_same(plain(clip, opts, tmp_path.parent), out)
    assert not list(tmp_path.glob(".*facestyle-ray*"))                    # the work folder is gone
    assert_progress_per_frame(json_events(stream), result)


def test_clip_of_one_chunk_is_converted_whole(cluster, clip, tiny_ckpt_path, tmp_path):
    """4 s with chunks of 10 s: one worker runs the plain convert (no seam to plan); frames equal."""
    opts = options(tiny_ckpt_path)
    out, stream = tmp_path / "ray.mkv", io.StringIO()
    [result] = convert_on_ray([(clip, out)], opts, RayConfig(cluster[0].address, chunk_seconds=10.0),
                              JsonProgress(stream, interval=0))
    assert result.ok, result.error
    assert result.chunks == {"total": 1, "reused": 0, "rendered": 1}
    assert (result.frames_in, result.frames_out, result.frames_with_face) == (FRAMES, FRAMES, FRAMES)
    assert_same(plain(clip, opts, tmp_path.parent), out)
    assert [p.name for p in tmp_path.iterdir()] == ["ray.mkv"]          # moved into place; no work folder left
    events = json_events(stream)
    assert events[0] == {"event": "start", "file": clip.name, "total": FRAMES}
    assert_progress_per_frame(events, result)


def test_node_lost_mid_run(cluster, clip, tiny_ckpt_path, tmp_path, caplog):
    sim, ray = cluster
    extra = sim.add_node(num_cpus=1, num_gpus=1, node_ip_address="127.0.0.1", object_store_memory=200 * 2**20)
    sim.wait_for_nodes()
    opts = options(tiny_ckpt_path)
    out, work = tmp_path / "ray.mkv", tmp_path / "work"
    box: dict = {}
    run = threading.Thread(target=lambda: box.update(r=convert_on_ray(
        [(clip, out)], opts, RayConfig(sim.address, chunk_seconds=0.5, work_dir=work, keep_work=True))))
    run.start()
    deadline = time.monotonic() + 300
    while not list(work.glob("*/codes_*.pt")) and time.monotonic() < deadline:   # the workers are busy
        time.sleep(0.05)
    sim.remove_node(extra)
    run.join(600)
    [result] = box["r"]
    assert result.ok, result.error
    assert "worker lost" in caplog.text
    assert_same(plain(clip, opts, tmp_path.parent), out)


DRIVER = """
import sys
from pathlib import Path
from pipeline.cluster import RayConfig, convert_on_ray
from pipeline.options import ConvertOptions
src, out, work, model, address = sys.argv[1:]
opts = ConvertOptions(model=model, codec="ffv1", batch_size=1, threads=1)
convert_on_ray([(Path(src), Path(out))], opts, RayConfig(address, chunk_seconds=0.5, work_dir=Path(work)))
"""


def test_driver_killed_then_rerun_renders_only_missing_chunks(cluster, clip, tiny_ckpt_path, tmp_path):
    sim, _ = cluster
    out, work = tmp_path / "ray.mkv", tmp_path / "work"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(clip), str(out), str(work), str(tiny_ckpt_path),
                               sim.address], cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while len(list(work.glob("*/chunk_*.json"))) < 2 and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver ended before it was killed"
            time.sleep(0.05)
    finally:
        driver.kill()
        driver.wait()
    assert not out.exists()
    done_before = len(list(work.glob("*/chunk_*.json")))
    opts = options(tiny_ckpt_path)
    [result] = convert_on_ray([(clip, out)], opts, RayConfig(sim.address, chunk_seconds=0.5, work_dir=work))
    assert result.ok, result.error
    chunks = result.chunks
    assert chunks["reused"] >= done_before >= 2 and chunks["rendered"] >= 1
    assert chunks["reused"] + chunks["rendered"] == chunks["total"]
    assert_same(plain(clip, opts, tmp_path.parent), out)


def test_folder_of_three_clips_over_two_workers(cluster, face_photo, tiny_ckpt_path, tmp_path):
    sim, _ = cluster
    inbox = tmp_path / "in"
    inbox.mkdir()
    lengths = {"a.mp4": 12, "b.mp4": 25, "c.mp4": 8}
    for name, n in lengths.items():
        face_clip(face_photo, inbox / name, frames=n)
    pairs = [(inbox / name, tmp_path / f"{Path(name).stem}.mkv") for name in lengths]
    opts = options(tiny_ckpt_path)
    results = convert_on_ray(pairs, opts, RayConfig(sim.address, chunk_seconds=1.0))
    assert [r.ok for r in results] == [True] * 3, [r.error for r in results]
    assert [r.frames_out for r in results] == list(lengths.values())
    assert results[1].chunks["total"] >= 2
    assert_same(plain(inbox / "b.mp4", opts, tmp_path), pairs[1][1])


def test_no_face_is_decided_for_the_whole_clip(cluster, tiny_ckpt_path, tmp_path, caplog):
    from tests.clips import make_clip

    src = make_clip(tmp_path / "blank.mp4", frames=20, size=(64, 48), fps=10)
    [result] = convert_on_ray([(src, tmp_path / "x.mkv")], options(tiny_ckpt_path),
                              RayConfig(cluster[0].address, chunk_seconds=0.5))
    assert not result.ok and "no face found in 20 frame(s)" in result.error
    [passed] = convert_on_ray([(src, tmp_path / "y.mkv")], options(tiny_ckpt_path, no_face="pass"),
                              RayConfig(cluster[0].address, chunk_seconds=0.5))
    assert passed.ok and passed.frames_out == 20 and passed.chunks["total"] >= 2
    [whole] = convert_on_ray([(src, tmp_path / "z.mkv")], options(tiny_ckpt_path),      # one chunk: converted whole
                             RayConfig(cluster[0].address, chunk_seconds=10.0))
    assert not whole.ok and "no face found in 20 frame(s)" in whole.error
    assert "trying again" not in caplog.text                       # not retried: it would find no face again

