"""The records that flow between the stages, in data-flow order.

    video_in -> Frame -> detect_crop -> Located -> invert.codes -> Coded -> smooth -> Coded
    -> invert.features -> Inverted -> generate -> Generated -> paste -> OutFrame -> video_out

Each record wraps the one before it, so a later stage reaches the decoded frame (``rec.located.frame``)
without reaching into another module. The decoded input frame and the written output frame are
different types: an output frame may carry YUV planes made on the device instead of RGB pixels.
Frames without a face flow through with empty face lists.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from pipeline.face.align import CropParams, align_face, apply_crop
from pipeline.media.yuv import NV12
from pipeline.model import Latents


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded picture.

    Attributes:
        index: 0-based position among the frames read (after trimming).
        pts: the source timestamp, in ``info.time_base`` (kept so VFR survives to video_out).
        time: seconds from the start of the clip.
        pixels: ``[H, W, 3]`` uint8 RGB, already turned upright.
    """

    index: int
    pts: int
    time: float
    pixels: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        h, w = self.pixels.shape[:2]
        return w, h


@dataclass(eq=False)
class FaceCrop:
    """One tracked face on one frame.

    Attributes:
        track_id: stable per face over the clip.
        crop: where ``pixels`` came from (rescaled-frame window; see :mod:`pipeline.face.align`).
        landmarks: smoothed ``[68, 2]`` landmarks in frame coordinates.
        pixels: the ``x1`` crop, uint8 ``[crop_h, crop_w, 3]`` RGB (multiples of 8).
        aligned: the FFHQ-aligned face, uint8 ``[256, 256, 3]``, or None when not needed.

    The device route hands on :class:`UncutFace` records instead (geometry only).
    """

    track_id: int
    crop: CropParams
    landmarks: np.ndarray
    pixels: np.ndarray
    aligned: np.ndarray | None = None

    def cut(self, kind: str) -> np.ndarray | None:
        """The host pixels of ``kind`` (``"crop"``: ``pixels``, ``"aligned"``: ``aligned``) as far as
        they are already cut; never cuts (an :class:`UncutFace` answers None until something read them)."""
        return self.pixels if kind == "crop" else self.aligned

    @property
    def wants_aligned(self) -> bool:
        """Whether this face has (or is to have) an aligned face for the codes pass."""
        return self.aligned is not None

    @property
    def crop_shape(self) -> tuple[int, int]:
        """``(crop_h, crop_w)`` of the ``x1`` crop."""
        return self.pixels.shape[:2]


class UncutFace(FaceCrop):
    """A face the device route hands on uncut (:meth:`pipeline.convert.ConvertConfig.crop_device`):
    the geometry, the frame it is on, and whether its aligned face is needed (``align_later``).

    The stages cut it on the model's device (:func:`pipeline.runtime.batch.face_images`). Reading
    ``pixels`` or ``aligned`` still gives the host route's pictures, cut on the host on first read
    (for readers outside the stages, such as the benchmark's tally), so every :class:`FaceCrop`
    reader keeps working.
    """

    def __init__(self, track_id: int, crop: CropParams, landmarks: np.ndarray, frame: np.ndarray,
                 align_later: bool) -> None:
        self.frame_pixels, self.align_later = frame, align_later
        super().__init__(track_id, crop, landmarks, None, None)

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = apply_crop(self.frame_pixels, self.crop)
        return self._pixels

    @pixels.setter
    def pixels(self, value: np.ndarray | None) -> None:
        self._pixels = value

    @property
    def aligned(self) -> np.ndarray | None:
        if self._aligned is None and self.align_later:
            self._aligned = align_face(self.frame_pixels, self.landmarks)
        return self._aligned

    @aligned.setter
    def aligned(self, value: np.ndarray | None) -> None:
        self._aligned = value

    def cut(self, kind: str) -> np.ndarray | None:
        return self._pixels if kind == "crop" else self._aligned

    @property
    def wants_aligned(self) -> bool:
        return self.align_later or self._aligned is not None

    @property
    def crop_shape(self) -> tuple[int, int]:
        return self.crop.crop_h, self.crop.crop_w

    def __repr__(self) -> str:
        return (f"UncutFace(track_id={self.track_id}, crop={self.crop}, align_later={self.align_later}, "
                f"cut={self._pixels is not None})")


@dataclass(eq=False)
class Located:
    """A frame and the faces found on it (empty: nothing to stylize, the frame passes through).

    ``on_device``: the frame's pixels uploaded to the model's device (uint8 ``[H, W, 3]``), kept by
    the first stage that needs them there so later stages (the crops, the paste) do not upload the
    frame again (see :func:`pipeline.runtime.batch.frame_on`); None until then. Read-only: a stage
    that changes pixels works on a copy.
    """

    frame: Frame
    faces: list[FaceCrop] = field(default_factory=list)
    on_device: Tensor | None = field(default=None, repr=False)


@dataclass(eq=False)
class Coded:
    """A located frame with one W+ code ``[1, 18, D]`` per face, in ``located.faces`` order."""

    located: Located
    codes: list[Tensor]


@dataclass(eq=False)
class Inverted:
    """A located frame with one :class:`Latents` (batch of 1) per face, in ``located.faces`` order."""

    located: Located
    latents: list[Latents]


@dataclass(eq=False)
class Generated:
    """An inverted frame with one stylized crop per face: uint8 ``[4h, 4w, 3]`` RGB, a NumPy array
    (or a tensor on the model's device when the paste runs there)."""

    inverted: Inverted
    images: list[np.ndarray | torch.Tensor]


@dataclass(frozen=True, eq=False)
class OutFrame:
    """One frame to write, at the source frame's place in time.

    Attributes:
        index, pts, time: those of the source :class:`Frame` it was made from.
        pixels: ``[H, W, 3]`` uint8 RGB, or None when the frame comes as ``yuv``.
        yuv: planes of the on-device paste, BT.709 limited-range 4:2:0: ``y`` ``[H, W]``, ``u`` and
            ``v`` ``[ceil(H/2), ceil(W/2)]`` (uint8); else None.
        nv12: the same picture left on the device for an NVENC encoder
            (:meth:`pipeline.convert.ConvertConfig.nvenc_zero_copy`); else None.
    """

    index: int
    pts: int
    time: float
    pixels: np.ndarray | None
    yuv: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    nv12: NV12 | None = None

    @classmethod
    def of(cls, frame: Frame, pixels: np.ndarray | None = None) -> OutFrame:
        """The output frame of ``frame`` with ``pixels`` (default: the source pixels, unchanged)."""
        return cls(frame.index, frame.pts, frame.time, frame.pixels if pixels is None else pixels)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        if self.nv12 is not None:
            return self.nv12.width, self.nv12.height
        h, w = (self.pixels if self.pixels is not None else self.yuv[0]).shape[:2]
        return w, h
