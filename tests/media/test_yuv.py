"""rgb_to_yuv420: BT.709 limited range 4:2:0 in PyTorch, as the encoder's own conversion does it."""
from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
import torch

from pipeline.media.yuv import download, rgb_to_nv12, rgb_to_yuv420
from pipeline.stages.video_in import read
from pipeline.stages.video_out import VideoOutConfig, VideoWriter, fit_planes
from tests.clips import make_clip


def _smooth_picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3)).astype(np.uint8)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _swscale(rgb: np.ndarray) -> list[np.ndarray]:
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
    return [np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width] for p in frame.planes]


def test_matches_swscale_on_a_natural_picture():
    rgb = _smooth_picture(64, 96)
    got = [p.numpy() for p in rgb_to_yuv420(torch.from_numpy(rgb))]
    want = _swscale(rgb)
    for mine, theirs in zip(got, want, strict=True):
        assert mine.shape == theirs.shape and mine.dtype == np.uint8
    diff = [np.abs(a.astype(int) - b.astype(int)) for a, b in zip(got, want, strict=True)]
    assert diff[0].max() <= 1                                   # luma: rounding only
    assert diff[1].mean() < 1.5 and diff[2].mean() < 1.5        # chroma: a 2x2 mean vs swscale's filter


def test_known_colours_and_limited_range():
    rgb = np.array([[[0, 0, 0], [255, 255, 255]], [[255, 0, 0], [0, 0, 255]]], np.uint8)
    y, u, v = rgb_to_yuv420(torch.from_numpy(rgb))
    assert y.tolist() == [[16, 235], [63, 32]]                  # BT.709: red 16 + 219 * 0.2126
    assert u.shape == v.shape == (1, 1)
    # mean chroma of black, white, red and blue
    assert u.item() == round(128 + 224 * np.mean([0, 0, -0.2126 / 1.8556, (1 - 0.0722) / 1.8556]))
    assert v.item() == round(128 + 224 * np.mean([0, 0, (1 - 0.2126) / 1.5748, -0.0722 / 1.5748]))


def test_odd_sizes_round_the_chroma_up():
    y, u, v = rgb_to_yuv420(torch.from_numpy(_smooth_picture(47, 63)))
    assert y.shape == (47, 63) and u.shape == v.shape == (24, 32)


def test_refuses_what_is_not_uint8_rgb():
    with pytest.raises(ValueError):
        rgb_to_yuv420(torch.zeros(4, 4, 3))
    with pytest.raises(ValueError):
        rgb_to_yuv420(torch.zeros(3, 4, 4, dtype=torch.uint8))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def test_planes_round_trip_through_the_encoder_as_well_as_rgb_does(tmp_path):
    src = make_clip(tmp_path / "in.mp4", size=(63, 47), frames=3, pix_fmt="yuv444p")
    info = read(src).info
    pictures = [_smooth_picture(47, 63, seed) for seed in range(3)]
    quality = {}
    for route in ("rgb", "yuv"):
        dst = tmp_path / f"{route}.mp4"
        with VideoWriter(dst, VideoOutConfig(crf=0), info) as writer:
            assert writer.frame_size == (62, 46)                # H.264 wants even sizes: both are cut
            for i, rgb in enumerate(pictures):
                if route == "rgb":
                    writer.write(rgb, i * 1000)
                else:
                    planes = tuple(p.numpy() for p in rgb_to_yuv420(torch.from_numpy(rgb)))
                    writer.write_yuv(*fit_planes(planes, writer.frame_size), i * 1000)
        back = [f.pixels for f in read(dst)]
        assert len(back) == 3 and back[0].shape == (46, 62, 3)
        quality[route] = min(_psnr(rgb[:46, :62], got) for rgb, got in zip(pictures, back, strict=True))
    # 4:2:0 costs these saturated random colours some dB either way; ours must not cost more
    assert quality["yuv"] > quality["rgb"] - 0.5, quality


# ---- NV12 on the device (the NVENC zero-copy route) and the one-copy download

def test_nv12_is_one_buffer_with_the_chroma_right_after_the_luma():
    """NVENC reads the chroma ``pitch * height`` bytes after the luma pointer: one allocation, rows of
    NV12_PITCH bytes, the planes those of rgb_to_yuv420 (U, V interleaved)."""
    rgb = torch.from_numpy(_smooth_picture(46, 300))
    nv12 = rgb_to_nv12(rgb)
    y, u, v = rgb_to_yuv420(rgb)
    pitch = nv12.buffer.stride(0)
    assert pitch == 512 and nv12.buffer.shape == (69, 512) and (nv12.width, nv12.height) == (300, 46)
    assert nv12.y.data_ptr() == nv12.buffer.data_ptr()
    assert nv12.uv.data_ptr() - nv12.y.data_ptr() == pitch * 46
    assert nv12.uv.shape == (23, 150, 2) and nv12.uv.stride() == (pitch, 2, 1)
    assert torch.equal(nv12.y, y) and torch.equal(nv12.uv[..., 0], u) and torch.equal(nv12.uv[..., 1], v)
    assert nv12.ready is None                                     # no CUDA event on a CPU
    for got, want in zip(nv12.host_planes(), (y, u, v), strict=True):
        assert isinstance(got, np.ndarray) and np.array_equal(got, want.numpy())
    with pytest.raises(ValueError, match="even"):
        rgb_to_nv12(torch.from_numpy(_smooth_picture(47, 64)))


def test_download_splits_one_packed_copy_back_into_the_planes():
    planes = [torch.arange(12, dtype=torch.uint8).view(3, 4), torch.full((2, 2), 7, dtype=torch.uint8),
              torch.arange(4, dtype=torch.uint8).view(2, 2).T]            # a non-contiguous view too
    got = download(planes)
    assert [g.shape for g in got] == [(3, 4), (2, 2), (2, 2)]
    for g, p in zip(got, planes, strict=True):
        assert np.array_equal(g, p.numpy())
    addr = [g.__array_interface__["data"][0] for g in got]
    assert [addr[1] - addr[0], addr[2] - addr[1]] == [12, 4]      # packed end to end in one buffer


def test_pyav_from_dlpack_gives_the_frame_the_planar_route_gives(tmp_path):
    """The zero-copy route's frame building, on CPU tensors: ``from_dlpack`` NV12 (what the NVENC route
    hands the encoder) encodes to the same pictures as today's yuv420p planes (ffv1, lossless)."""
    src = make_clip(tmp_path / "in.mkv", size=(64, 48), frames=3, codec="ffv1", pix_fmt="bgr0")
    info = read(src).info
    pictures = [torch.from_numpy(_smooth_picture(48, 64, seed)) for seed in range(3)]
    out = {}
    for route in ("planes", "nv12"):
        dst = tmp_path / f"{route}.mkv"
        with VideoWriter(dst, VideoOutConfig(codec="ffv1"), info) as writer:
            for i, rgb in enumerate(pictures):
                if route == "planes":
                    writer.write_yuv(*(p.numpy() for p in rgb_to_yuv420(rgb)), i)
                else:
                    writer.write_nv12(rgb_to_nv12(rgb), i)
        with av.open(str(dst)) as c:
            out[route] = [(f.pts, f.to_ndarray(format="yuv420p")) for f in c.decode(video=0)]
    assert [p for p, _ in out["nv12"]] == [p for p, _ in out["planes"]] == [0, 1, 2]
    for (_, a), (_, b) in zip(out["planes"], out["nv12"], strict=True):
        assert np.array_equal(a, b)
