"""The convert runner end to end: frame counts, timestamps, audio, paste-back, nothing left behind.

A fixed-face detector (pipeline.tools.synthetic) puts a synthetic face on chosen frames so these tests
need no detector model and run on tiny synthetic clips; tests with real faces use ../shared/media and the dlib detector.
"""
from __future__ import annotations

import threading
import time
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from pipeline import InputError, NoFaceError, OutputError
from pipeline.convert import ConvertConfig, convert_file
from pipeline.face.detect import Face
from pipeline.stages.detect_crop import FaceConfig
from pipeline.stages.paste import PasteConfig
from pipeline.stages.video_out import VideoOutConfig
from pipeline.tools.synthetic import FixedFaceDetector, synthetic_face
from tests.clips import audio_span, make_clip

LOSSLESS = VideoOutConfig(codec="ffv1", pix_fmt="bgr0")


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


def decode(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(s)]
        return frames, s.time_base


def test_full_mode_keeps_frames_timestamps_and_audio(tmp_path, model):
    pts = [0, 2, 3, 7, 8, 12, 13, 20]                       # variable frame rate, time base 1/20
    src = make_clip(tmp_path / "in.mkv", size=(96, 80), pts=pts, time_base=Fraction(1, 20), fps=10,
                    audio=True, codec="ffv1", pix_fmt="bgr0")
    dst = tmp_path / "out.mkv"
    det = FixedFaceDetector(synthetic_face(48, 36, 40), on={0, 1, 2, 3, 5, 6, 7})   # lost on frame 4
    result = convert_file(src, dst, model, det, ConvertConfig(video_out=LOSSLESS))
    assert result.frames_in == result.frames_out == len(pts)
    assert result.frames_with_face == 7
    src_frames, src_tb = decode(src)
    out_frames, out_tb = decode(dst)
    assert [p * out_tb for p, _ in out_frames] == [p * src_tb for p, _ in src_frames]
    # frame 4 had no face: passed through untouched; the others were changed inside the window only
    assert np.array_equal(out_frames[4][1], src_frames[4][1])
    assert not np.array_equal(out_frames[0][1], src_frames[0][1])
    a_in, a_out = audio_span(src), audio_span(dst)
    assert a_out is not None and abs((a_out[1] - a_out[0]) - (a_in[1] - a_in[0])) < 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv", "out.mkv"]


class ThreadRecordingDetector(FixedFaceDetector):
    """A fixed-face detector that notes the thread it runs on, and can fail on one call."""

    def __init__(self, face: Face, fail_at: int | None = None) -> None:
        super().__init__(face)
        self.threads: set[str] = set()
        self.fail_at = fail_at

    def detect(self, pixels: np.ndarray) -> list[Face]:
        self.threads.add(threading.current_thread().name)
        if self.calls == self.fail_at:
            raise InputError("the detector gave up on this frame")
        return super().detect(pixels)


def test_faces_are_found_in_their_own_thread(tmp_path, model):
    src = make_clip(tmp_path / "in.mp4", frames=6, size=(96, 80))
    det = ThreadRecordingDetector(synthetic_face(48, 36, 40))
    result = convert_file(src, tmp_path / "out.mp4", model, det, ConvertConfig())
    assert result.frames_out == result.frames_with_face == 6 and det.calls == 6
    assert det.threads == {"facestyle:find-faces"}
    assert not any(t.name == "facestyle:find-faces" for t in threading.enumerate())


def test_an_error_while_finding_faces_ends_the_conversion_cleanly(tmp_path, model):
    src = make_clip(tmp_path / "in.mp4", frames=12, size=(96, 80))
    det = ThreadRecordingDetector(synthetic_face(48, 36, 40), fail_at=7)
    with pytest.raises(InputError, match="gave up"):
        convert_file(src, tmp_path / "out.mp4", model, det, ConvertConfig())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    assert not any(t.name.startswith(("facestyle:find-faces", "video_in:")) for t in threading.enumerate())


class StopAt:
    """A progress sink that raises on the n-th written frame (as a cancelled service job does)."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def start(self, name: str, total: int | None) -> None:
        pass

    def update(self, n: int = 1) -> None:
        self.seen += n
        if self.seen == self.n:
            raise KeyboardInterrupt

    def finish(self, **summary: object) -> None:
        pass


def test_an_error_in_the_main_thread_also_stops_face_finding(tmp_path, model):
    src = make_clip(tmp_path / "in.mp4", frames=30, size=(96, 80))
    det = FixedFaceDetector(synthetic_face(48, 36, 40))
    try:
        convert_file(src, tmp_path / "out.mp4", model, det, ConvertConfig(), progress=StopAt(3))
    except KeyboardInterrupt:
        pass                                     # handled and dropped, as the CLI and the service do
    deadline = time.monotonic() + 5
    while any(t.name == "facestyle:find-faces" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name.startswith(("facestyle:find-faces", "video_in:")) for t in threading.enumerate())
    assert det.calls < 30                        # it stopped, it did not run to the end of the clip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_paste_on_the_device_gives_the_same_video(tmp_path, model):
    """The CUDA route (paste and YUV conversion where the crops are, planes to the encoder), run on
    the CPU: same frames, timestamps and audio as the host route, pictures within 4:2:0 rounding."""
    pts = [0, 2, 3, 7, 8, 12]
    src = make_clip(tmp_path / "in.mkv", size=(96, 80), pts=pts, time_base=Fraction(1, 20), fps=10,
                    audio=True, codec="ffv1", pix_fmt="bgr0")
    out = {}
    for route, cfg in (("host", ConvertConfig(video_out=VideoOutConfig(codec="ffv1"))),
                       ("device", ConvertConfig(video_out=VideoOutConfig(codec="ffv1"), paste_on="device"))):
        dst = tmp_path / f"{route}.mkv"
        det = FixedFaceDetector(synthetic_face(48, 36, 40), on={0, 1, 2, 4, 5})           # lost on frame 3
        result = convert_file(src, dst, model, det, cfg)
        assert result.frames_out == len(pts) and result.frames_with_face == 5
        out[route] = decode(dst)
        a_in, a_out = audio_span(src), audio_span(dst)
        assert a_out is not None and abs((a_out[1] - a_out[0]) - (a_in[1] - a_in[0])) < 0.05
    (host, tb_h), (dev, tb_d) = out["host"], out["device"]
    assert [p * tb_d for p, _ in dev] == [p * tb_h for p, _ in host]
    src_frames, _ = decode(src)
    for i, ((_, a), (_, b), (_, s)) in enumerate(zip(host, dev, src_frames, strict=True)):
        if i != 3:
            assert np.abs(b.astype(int) - s.astype(int)).max() > 40      # the face was stylized on the device
        err = np.abs(a.astype(int) - b.astype(int))
        psnr = 10 * np.log10(255**2 / np.mean(err.astype(float) ** 2))
        # measured 46.9-47.5 dB with a face; 37.4 dB on the face-less frame (its sharp synthetic
        # edges meet two different 4:2:0 chroma filters: swscale's and the 2x2 mean)
        assert err.mean() < 1.0 and psnr > 35, (err.mean(), psnr)


@pytest.mark.parametrize("style_code", ["per-frame", "smoothed"])
def test_code_every_runs_the_codes_pass_on_key_frames_and_interpolates_between(tmp_path, model, style_code):
    from pipeline.convert import locate_faces, plan
    from pipeline.stages.invert import InvertConfig
    from pipeline.stages.smooth import SmoothConfig
    from pipeline.stages.video_in import VideoInConfig, read

    src = make_clip(tmp_path / "in.mp4", frames=8, size=(96, 80))
    # (the test clip's frames differ so much that shot detection would cut between all of them)
    cfg = ConvertConfig(invert=InvertConfig(batch_size=2, style_code=style_code, code_every=3),
                        smooth=SmoothConfig(shot_threshold=1.0))
    seen = []
    real_codes = model.codes

    def counting_codes(x2):
        seen.append(x2.shape[0])
        return real_codes(x2)

    with read(src, VideoInConfig()) as frames:
        located = list(locate_faces(frames, (96, 80), 10, FixedFaceDetector(synthetic_face(48, 36, 40)), cfg))
    assert [rec.faces[0].aligned is not None for rec in located] == [i % 3 == 0 for i in range(8)]
    model.codes = counting_codes
    try:
        coded = list(plan(iter(located), 10, model, cfg))
    finally:
        del model.codes
    assert sum(seen) == 4                                           # frames 0, 3, 6 and the last, 7
    codes = [rec.codes[0] for rec in coded]
    if style_code == "per-frame":                                   # on the line between key frames
        from pipeline.stages.keycodes import interpolate

        for a, b in ((0, 3), (3, 6)):
            for m in range(a + 1, b):
                assert torch.equal(codes[m], interpolate(codes[a], codes[b], (m - a) / 3))
        assert not torch.equal(codes[0], codes[1])
    else:                                                           # the smoothing filters the curve
        assert all(not torch.equal(codes[i], codes[i + 1]) for i in range(7))


def test_paste_touches_only_the_crop_window(tmp_path, model):
    src = make_clip(tmp_path / "in.mkv", frames=2, size=(160, 96), codec="ffv1", pix_fmt="bgr0")
    dst = tmp_path / "out.mkv"
    # eyes 64 px apart -> scale 1; the crop window is +-256 px around the eyes clipped to the frame,
    # so with a wide frame and padding 24 it covers only the middle
    cfg = ConvertConfig(face=FaceConfig(padding=24), video_out=LOSSLESS)
    convert_file(src, dst, model, FixedFaceDetector(synthetic_face(80, 40, 64)), cfg)
    (_, a), _ = decode(src)[0][0], None
    out = decode(dst)[0][0][1]
    diff = np.abs(out.astype(int) - a.astype(int)).sum(axis=2)
    cols = np.nonzero(diff.sum(axis=0))[0]
    assert cols.min() >= 80 - 24 - 1 and cols.max() <= 80 + 24 + 1      # window: x in [56, 104)
    assert diff[:, :50].sum() == 0 and diff[:, 110:].sum() == 0


def test_crop_mode_writes_the_4x_crop(tmp_path, model):
    src = make_clip(tmp_path / "in.mp4", frames=4, size=(96, 80))
    dst = tmp_path / "out.mp4"
    cfg = ConvertConfig(paste=PasteConfig(mode="crop"))
    result = convert_file(src, dst, model, FixedFaceDetector(synthetic_face(48, 36, 64)), cfg)
    frames, _ = decode(dst)
    assert result.frames_out == len(frames) == 4
    h, w = frames[0][1].shape[:2]
    assert (h % 32, w % 32) == (0, 0) and h >= 4 * 64


def test_no_face_anywhere_fails_and_leaves_nothing(tmp_path, model):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    dst = tmp_path / "out.mp4"
    with pytest.raises(NoFaceError, match="no face"):
        convert_file(src, dst, model, FixedFaceDetector(synthetic_face(0, 0, 1), on=set()), ConvertConfig())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    result = convert_file(src, dst, model, FixedFaceDetector(synthetic_face(0, 0, 1), on=set()),
                          ConvertConfig(no_face="pass"))
    assert result.frames_out == 3 and dst.exists()


def test_drop_lost_frames(tmp_path, model):
    src = make_clip(tmp_path / "in.mp4", frames=6, size=(96, 80))
    dst = tmp_path / "out.mp4"
    det = FixedFaceDetector(synthetic_face(48, 36, 40), on={0, 1, 4, 5})
    result = convert_file(src, dst, model, det, ConvertConfig(drop_lost=True))
    frames, tb = decode(dst)
    assert result.frames_out == len(frames) == 4
    assert [round(float(p * tb) * 10) for p, _ in frames] == [0, 1, 4, 5]     # source times kept


def test_existing_output_refused_before_any_work(tmp_path, model):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"keep me")
    det = FixedFaceDetector(synthetic_face(32, 20, 30))
    with pytest.raises(OutputError, match="exists"):
        convert_file(src, dst, model, det, ConvertConfig())
    assert dst.read_bytes() == b"keep me" and det.calls == 0


def test_batched_equals_unbatched(tmp_path, model):
    from pipeline.stages.generate import GenerateConfig
    from pipeline.stages.invert import InvertConfig

    src = make_clip(tmp_path / "in.mkv", frames=5, size=(96, 80), codec="ffv1", pix_fmt="bgr0")
    outs = []
    for b in (1, 3):
        dst = tmp_path / f"out{b}.mkv"
        cfg = ConvertConfig(invert=InvertConfig(batch_size=b), generate=GenerateConfig(batch_size=b),
                            video_out=LOSSLESS)
        convert_file(src, dst, model, FixedFaceDetector(synthetic_face(48, 36, 40)), cfg)
        outs.append(decode(dst)[0])
    for (p1, a), (p3, b) in zip(*outs, strict=True):
        assert p1 == p3 and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_all_faces_are_stylized(tmp_path, model):
    src = make_clip(tmp_path / "in.mkv", frames=3, size=(160, 96), codec="ffv1", pix_fmt="bgr0")
    outs = {}
    for mode in ("largest", "all"):
        dst = tmp_path / f"{mode}.mkv"
        cfg = ConvertConfig(face=FaceConfig(faces=mode, padding=24), video_out=LOSSLESS)
        two = FixedFaceDetector(synthetic_face(40, 40, 24), synthetic_face(120, 40, 24))
        convert_file(src, dst, model, two, cfg)
        outs[mode] = decode(dst)[0][0][1].astype(int)
    original = decode(src)[0][0][1].astype(int)
    changed = {m: np.abs(o - original).sum(axis=2) > 0 for m, o in outs.items()}
    assert changed["all"][:, :80].any() and changed["all"][:, 80:].any()       # both faces
    assert changed["largest"][:, :80].any() != changed["largest"][:, 80:].any()  # exactly one


@pytest.mark.parametrize(("style_code", "every"), [("first-frame", 1), ("smoothed", 1), ("smoothed", 3)])
def test_cutting_on_the_device_gives_the_same_video(tmp_path, model, monkeypatch, style_code, every):
    """crop_on="device" (the CUDA route: face finding cuts nothing, invert cuts the crops and aligned
    faces from the uploaded frame with kornia; with --code-every 3 the key codes stage cuts its key
    faces there too), run on the CPU: same frames and timestamps as the host route, pictures within
    one level; the host cutters are not called."""
    from pipeline import records
    from pipeline.face import warp
    from pipeline.stages import detect_crop, keycodes
    from pipeline.stages.invert import InvertConfig

    pts = [0, 1, 3, 4, 6]
    src = make_clip(tmp_path / "in.mkv", size=(160, 128), pts=pts, time_base=Fraction(1, 10), fps=10,
                    codec="ffv1", pix_fmt="bgr0")
    out, warps = {}, []
    real = warp.warp_many

    def counted(*args):
        warps.append(len(args[0]))
        return real(*args)

    for route in ("host", "device"):
        cfg = ConvertConfig(face=FaceConfig(padding=48), invert=InvertConfig(style_code=style_code, batch_size=2,
                                                                             code_every=every),
                            video_out=LOSSLESS, crop_on=route)
        if route == "device":
            for module in (detect_crop, records, keycodes):
                for name in ("apply_crop", "align_face"):
                    if hasattr(module, name):
                        monkeypatch.setattr(module, name, lambda *a: pytest.fail("cut on the host"))
            monkeypatch.setattr("pipeline.runtime.batch.warp_many", counted)
        det = FixedFaceDetector(synthetic_face(80, 56, 24), on={0, 1, 3, 4})          # lost on frame 2
        result = convert_file(src, tmp_path / f"{route}.mkv", model, det, cfg)
        assert result.frames_out == len(pts) and result.frames_with_face == 4
        out[route] = decode(tmp_path / f"{route}.mkv")
    # crops: batches of 2 faces (frames 0+1, 3+4); aligned faces: the first only, or every face
    assert warps == ([1, 2, 2] if style_code == "first-frame" else [2, 2, 2, 2])
    (host, tb_h), (dev, tb_d) = out["host"], out["device"]
    assert [p * tb_d for p, _ in dev] == [p * tb_h for p, _ in host] == [Fraction(p, 10) for p in pts]
    src_frames, _ = decode(src)
    for i, ((_, a), (_, b), (_, s)) in enumerate(zip(host, dev, src_frames, strict=True)):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, i
        assert np.array_equal(a, s) == (i == 2)                      # stylized, but for the face-less frame


def test_crop_device_cuts_on_cuda_and_on_the_host_on_a_cpu():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert ConvertConfig().crop_device(cuda) == cuda
    assert ConvertConfig().crop_device(cpu) is None                  # OpenCV measured faster on a CPU
    assert ConvertConfig(crop_on="device").crop_device(cpu) == cpu
    assert ConvertConfig(crop_on="host").crop_device(cuda) is None
    with pytest.raises(ValueError, match="crop_on"):
        ConvertConfig(crop_on="gpu")


def test_nvenc_zero_copy_only_for_nvenc_in_pyav_with_the_paste_on_cuda(monkeypatch):
    """The route choice: NV12 left on the GPU only for an NVENC encoder in PyAV when the paste runs on
    CUDA (8-bit 4:2:0); every other case keeps the one copy to the host."""
    monkeypatch.setattr("pipeline.media.encoders._pyav_hardware", lambda *a: None)   # no NVENC here
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    for codec in ("h264_nvenc", "hevc_nvenc", "av1_nvenc"):
        assert ConvertConfig(video_out=VideoOutConfig(codec=codec)).nvenc_zero_copy(cuda), codec
    nvenc = VideoOutConfig(codec="h264_nvenc")
    assert not ConvertConfig(video_out=nvenc).nvenc_zero_copy(cuda, is_image=True)
    assert not ConvertConfig(video_out=nvenc).nvenc_zero_copy(cpu)
    assert not ConvertConfig(video_out=nvenc, paste_on="device").nvenc_zero_copy(cpu)   # CPU planes: host already
    assert not ConvertConfig(video_out=nvenc, paste_on="host").nvenc_zero_copy(cuda)
    assert not ConvertConfig(video_out=nvenc, paste=PasteConfig(mode="crop")).nvenc_zero_copy(cuda)
    assert not ConvertConfig(video_out=VideoOutConfig(codec="h264_qsv")).nvenc_zero_copy(cuda)
    assert not ConvertConfig(video_out=VideoOutConfig(codec="h264")).nvenc_zero_copy(cuda)
    from types import SimpleNamespace

    from pipeline.media.encoders import takes_device_frames
    assert takes_device_frames(SimpleNamespace(codec="hevc_nvenc", encoder="pyav"))
    assert not takes_device_frames(SimpleNamespace(codec="hevc_nvenc", encoder="ffmpeg"))   # bytes through a pipe
