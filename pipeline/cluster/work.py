"""The three passes a worker runs on a stretch of a clip, as plain functions (the Ray actor in
:mod:`pipeline.cluster.actors` only holds the model and the detector and calls these):

* :func:`find_faces`: decode a span, run the detector (absolute frame cadence) and compute each
  frame's shot histogram;
* :func:`code_chunk`: decode a chunk, cut the aligned faces the driver asks for and run the codes pass;
* :func:`render_chunk`: decode a chunk, cut the crops, then features, generator and paste exactly as
  :func:`pipeline.convert.render`, and encode the chunk's own frames to a segment.

Every pass checks that it decoded the frames face finding saw (same count and timestamps), so a
chunk never silently loses or doubles a frame.

Progress: a pass that writes frames counts them into a small file in the job folder
(:class:`FrameReport`), which the driver reads about once a second (the folder is on shared storage,
so no other channel is needed).
"""
from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.cluster.chunks import Chunk, Span
from pipeline.cluster.plan import FoundSpan, FramePlan
from pipeline.errors import InputError
from pipeline.face.align import align_face, apply_crop
from pipeline.face.detect import Detector
from pipeline.model import StyleGANEX
from pipeline.runtime.batch import to_images
from pipeline.stages import video_in, video_out
from pipeline.stages.detect_crop import FaceCrop, Located
from pipeline.stages.invert import Coded
from pipeline.stages.smooth import shot_histogram

if TYPE_CHECKING:
    from pipeline.convert import ConvertConfig

log = logging.getLogger(__name__)

NO_PIXELS = np.zeros((0, 0, 3), np.uint8)


def read_span(src: Path, vin: video_in.VideoInConfig, span: Span) -> video_in.FrameReader:
    """The frames of ``span`` (``start <= time < end``), decoded as a plain run decodes them."""
    return video_in.read(src, replace(vin, start=span.start, end=span.end))


def find_faces(src: Path, vin: video_in.VideoInConfig, span: Span, detector: Detector, detect_every: int,
               first_index: int, out: Path | None = None) -> FoundSpan:
    """Detections (on frames whose job index is a multiple of ``detect_every``, counting from
    ``first_index``) and shot histograms of a span; pickled to ``out`` when given."""
    found = FoundSpan(first_index)
    hists = []
    with read_span(src, vin, span) as reader:
        for k, frame in enumerate(reader):
            found.pts.append(int(frame.pts))
            found.times.append(float(frame.time))
            found.faces.append(detector.detect(frame.pixels) if (first_index + k) % detect_every == 0 else None)
            hists.append(shot_histogram(frame.pixels))
        if not reader.report.ok:
            found.damage = reader.report.summary()
    found.hists = np.stack(hists) if hists else np.zeros((0, 256), np.float32)
    if out is not None:
        _save_pickle(out, found)
    return found


def chunk_frames(src: Path, vin: video_in.VideoInConfig, chunk: Chunk,
                 plans: Sequence[FramePlan], until: int | None = None) -> Iterator[video_in.Frame]:
    """The chunk's frames with their job index, checked against the plan (count and timestamps).

    ``until``: stop after the frame with this index (the codes pass needs no more).

    Raises:
        InputError: the chunk decodes to other frames than face finding saw.
    """
    stop = chunk.stop if until is None else min(chunk.stop, until + 1)
    index = chunk.first
    with read_span(src, vin, chunk.span) as reader:
        for frame in reader:
            if index >= stop:
                break
            plan = plans[index - chunk.first]
            if plan.pts != frame.pts:
                raise InputError(f"{src}: chunk {chunk.number}: frame {index} has pts {frame.pts}, face finding saw "
                                 f"{plan.pts} (the file decodes differently when seeking)")
            yield replace(frame, index=index)
            index += 1
    if index < stop:
        raise InputError(f"{src}: chunk {chunk.number}: decoded {index - chunk.first} of {stop - chunk.first} frames")


def code_chunk(src: Path, vin: video_in.VideoInConfig, chunk: Chunk, plans: Sequence[FramePlan],
               requests: Sequence[tuple[int, int]], model: StyleGANEX, cfg: ConvertConfig,
               out: Path | None = None) -> dict[tuple[int, int], torch.Tensor]:
    """The codes pass on the faces ``(index, track)`` of this chunk that the driver asks for (see
    :func:`pipeline.cluster.plan.code_requests`), in that order and ``batch_size`` at a time:
    ``{(index, track): [1, 18, D]}`` on the CPU; saved to ``out`` with ``torch.save`` when given."""
    found: dict[tuple[int, int], torch.Tensor] = {}
    if requests:
        by_index = {p.index: p for p in plans}
        aligned: dict[tuple[int, int], np.ndarray] = {}
        wanted, asked = {i for i, _ in requests}, set(requests)
        for frame in chunk_frames(src, vin, chunk, plans, until=max(wanted)):
            if frame.index in wanted:
                for f in by_index[frame.index].faces:
                    if (frame.index, f.track_id) in asked:
                        aligned[(frame.index, f.track_id)] = align_face(frame.pixels, f.landmarks)
        device, dtype = model.latent_avg.device, model.latent_avg.dtype
        size = cfg.invert.batch_size
        with torch.inference_mode(), cfg.precision.context(device):
            for k in range(0, len(requests), size):
                part = requests[k:k + size]
                w = model.codes(to_images([aligned[r] for r in part], device, dtype))
                for j, r in enumerate(part):
                    found[r] = w[j:j + 1].detach().cpu().clone()
    if out is not None:
        _save_torch(out, found)
    return found


def render_chunk(src: Path, info: video_in.VideoInfo, vin: video_in.VideoInConfig, chunk: Chunk,
                 plans: Sequence[FramePlan], codes: dict[tuple[int, int], torch.Tensor], model: StyleGANEX,
                 cfg: ConvertConfig, segment: Path, report: Path | None = None) -> int:
    """Render the chunk's kept frames and encode them to ``segment`` (atomically); returns the frames
    written (0: none kept, no segment). ``report``: a :class:`FrameReport` file for the frames done."""
    from pipeline.convert import render

    kept = {p.index: p for p in plans if p.kept}
    if not kept:
        return 0

    def coded() -> Iterator[Coded]:
        for frame in chunk_frames(src, vin, chunk, plans):
            plan = kept.get(frame.index)
            if plan is None:
                continue
            faces = [FaceCrop(f.track_id, f.crop, f.landmarks, apply_crop(frame.pixels, f.crop)) for f in plan.faces]
            yield Coded(Located(frame, faces), [codes[(frame.index, f.track_id)] for f in plan.faces])

    seg_cfg = replace(cfg.video_out, overwrite=True, keep_audio=False)
    with cfg.precision.context(model.latent_avg.device):
        out = FrameReport(report).counted(render(coded(), model, cfg))
        video_out.write(out, segment, seg_cfg, info, audio_from=None, start=vin.start, end=vin.end)
    return len(kept)


class FrameReport:
    """Frames written so far by one task, counted into ``path`` (an integer, replaced atomically) at
    most every ``interval`` seconds and at the end; usable as a :class:`pipeline.progress.Progress`.
    ``path`` None: counts only."""

    def __init__(self, path: Path | None, interval: float = 0.25) -> None:
        self.path, self.interval = path, interval
        self.frames = 0
        self.last = 0.0

    def start(self, name: str, total: int | None) -> None:
        self.frames, self.last = 0, 0.0
        self._write()

    def update(self, n: int = 1) -> None:
        self.frames += n
        if time.monotonic() - self.last >= self.interval:
            self._write()

    def finish(self, **summary: object) -> None:
        self._write()

    def counted(self, items: Iterable) -> Iterator:
        """``items`` passed on, each counted as one frame (the end written too)."""
        for item in items:
            self.update(1)
            yield item
        self._write()

    def _write(self) -> None:
        self.last = time.monotonic()
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(str(self.frames))
            tmp.replace(self.path)
        except OSError as err:              # progress only: never fail the work for it
            log.debug("%s: cannot write progress (%s)", self.path, err)


def read_report(path: Path) -> int:
    """The frame count a :class:`FrameReport` left in ``path`` (0 when there is none yet)."""
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def load_pickle(path: Path) -> object:
    with open(path, "rb") as f:
        return pickle.load(f)


def _save_pickle(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def _save_torch(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
