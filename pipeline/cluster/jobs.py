"""One input file as a job for the workers: a state machine that hands out tasks and runs the
driver's sequential passes between them.

A clip goes: face finding per span (parallel) -> tracking over the whole clip (driver) -> the codes
pass per chunk (parallel) -> holding and smoothing the codes over the whole clip (driver) ->
rendering per chunk into segments (parallel) -> stitching (driver). Face finding and codes results
are kept in the job folder, and every rendered chunk leaves a receipt, so a rerun redoes only what
is missing.

A clip that is one face-finding span (at most 1.25 chunks long) has no seam to plan: one worker
converts it whole with the plain ``convert_file`` (face finding overlapped with the model, each frame
decoded once), and it counts as one chunk. A photo is one such task too.

Progress: the workers count the frames they write into files in the job folder
(:class:`pipeline.cluster.work.FrameReport`); :meth:`Job.take`, which the scheduler calls at least
once a second, reads them, so the bar moves per frame over all workers.
"""
from __future__ import annotations

import bisect
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.cluster.chunks import Chunk, WorkFolder, file_identity, find_spans, job_key, plan_chunks
from pipeline.cluster.config import RayConfig
from pipeline.cluster.plan import FoundSpan, code_requests, final_codes, track_clip
from pipeline.cluster.stitch import end_of_video, publish, stitch
from pipeline.cluster.work import load_pickle, read_report
from pipeline.convert import ConvertConfig, ConvertResult
from pipeline.errors import NoFaceError, OutputError
from pipeline.media.media_info import is_image_path
from pipeline.stages import video_in, video_out
from pipeline.stages.smooth import ShotDetector

log = logging.getLogger(__name__)

POLL_S = 0.25           # the frame counts of running tasks are read at most this often


@dataclass
class RayResult(ConvertResult):
    """A :class:`ConvertResult` plus how many chunks there were, were reused from an earlier run, and
    were rendered now."""

    chunks: dict = field(default_factory=lambda: {"total": 0, "reused": 0, "rendered": 0})
    exception: BaseException | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {**super().as_dict(), "chunks": dict(self.chunks)}


@dataclass(eq=False)
class Task:
    """A call of a worker method for a job; ``done(result)`` runs on the driver when it returns."""

    job: Any
    method: str
    args: tuple
    what: str
    done: Callable[[Any], None]
    attempts: int = 0
    lost: int = 0


class Job:
    """Base: the task queue and the result of one input."""

    def __init__(self, src: Path, dst: Path, cfg: ConvertConfig) -> None:
        self.src, self.dst, self.cfg = src, dst, cfg
        self.result = RayResult(src, None)
        self.ready: list[Task] = []
        self.outstanding = 0
        self.finished = False
        self.t0 = time.monotonic()
        self.progress: Callable[[int], None] = lambda n: None
        self.watched: dict[Path, list[int]] = {}       # report file -> [frames shown, frames at most]
        self.t_poll = 0.0

    def take(self) -> list[Task]:
        """The tasks ready to run (and, on the way, the frames the running ones wrote since the last
        call go to the progress bar)."""
        self._poll()
        tasks, self.ready = self.ready, []
        self.outstanding += len(tasks)
        return tasks

    def _watch(self, report: Path, frames: int) -> Path:
        """Show the frames a task counts into ``report`` (at most ``frames``) as it writes them."""
        report.unlink(missing_ok=True)
        self.watched[report] = [0, frames]
        return report

    def _poll(self) -> None:
        now = time.monotonic()
        if not self.watched or now - self.t_poll < POLL_S:
            return
        self.t_poll = now
        for report, (shown, most) in self.watched.items():
            frames = min(read_report(report), most)
            if frames > shown:
                self.watched[report][0] = frames
                self.progress(frames - shown)

    def _settle(self, report: Path, frames: int) -> None:
        """The task that counted into ``report`` wrote ``frames`` in all: show the rest."""
        shown, _ = self.watched.pop(report, [0, 0])
        report.unlink(missing_ok=True)
        if frames > shown:
            self.progress(frames - shown)

    def task_done(self, task: Task, value: Any) -> None:
        self.outstanding -= 1
        if not self.finished:
            task.done(value)

    def fail(self, err: BaseException) -> None:
        if self.finished:
            return
        self.result.error = str(err)
        self.result.exception = err
        self.result.dst = None
        self.finish()

    def finish(self) -> None:
        self.finished = True
        self.ready = []
        self.result.seconds = time.monotonic() - self.t0


class PhotoJob(Job):
    def start(self, progress: Callable[[int], None]) -> None:
        def done(value: dict) -> None:
            if "no_face" in value:
                raise NoFaceError(value["no_face"])
            self.result.dst = self.dst
            for k, v in value.items():
                setattr(self.result, k, v)
            progress(1)
            self.finish()

        self.ready.append(Task(self, "convert_file", (self.src, self.dst), f"{self.src.name}", done))


class ClipJob(Job):
    """A video: see the module docstring."""

    def __init__(self, src: Path, dst: Path, cfg: ConvertConfig, rcfg: RayConfig, model_id: object) -> None:
        super().__init__(src, dst, cfg)
        self.rcfg = rcfg
        self.info = video_in.probe(src)
        video_out.check_destination(dst, cfg.video_out.overwrite)
        key = job_key(file_identity(src), model_id, rcfg.chunk_seconds, dst.suffix.lower())
        self.folder = WorkFolder.for_output(dst.resolve(), rcfg.work_dir, key)
        self.found: list[FoundSpan | None] = []
        self.chunks: list[Chunk] = []
        self.render_left = 0
        self.t_phase = time.monotonic()

    def _phase(self, what: str) -> None:
        """Log how long the phase that ends now took (the driver's view: tasks and its own passes)."""
        now = time.monotonic()
        log.info("%s: %s in %.2f s", self.src.name, what, now - self.t_phase)
        self.t_phase = now

    @property
    def vin(self) -> video_in.VideoInConfig:
        return self.cfg.video_in

    def expected_frames(self) -> int | None:
        info, vin = self.info, self.vin
        if vin.start is None and vin.end is None:
            return info.frame_count or None
        if not info.duration or not info.fps:
            return None
        end = min(vin.end if vin.end is not None else info.duration, info.duration)
        return max(0, round((end - (vin.start or 0.0)) * float(info.fps)))

    # -- face finding ----------------------------------------------------------------------

    def start(self, progress: Callable[[int], None]) -> None:
        self.progress = progress
        self.folder.path.mkdir(parents=True, exist_ok=True)
        self.spans = find_spans(self.vin.start, self.vin.end, self.info.duration, self.rcfg.chunk_seconds)
        if len(self.spans) == 1:
            self._convert_whole()
            return
        self.found = [None] * len(self.spans)
        fps = float(self.info.fps or 25)
        for k, span in enumerate(self.spans):
            guess = 0 if self.cfg.face.detect_every == 1 else round(((span.start or 0) - (self.vin.start or 0)) * fps)
            self._find(k, guess)

    def _convert_whole(self) -> None:
        """One worker converts the clip as a plain run (see the module docstring) into the job folder;
        the driver then moves the file into place, so a job stopped midway leaves nothing beside the
        output but its job folder."""
        expected = self.expected_frames()
        report = self._watch(self.folder.file("progress_whole"), expected or 2**62)
        whole = self.folder.file(f"whole{self.dst.suffix}")
        self.result.chunks["total"] = 1

        def done(value: dict) -> None:
            if "no_face" in value:
                self._settle(report, 0)
                raise NoFaceError(value["no_face"])
            self._settle(report, value["frames_out"])
            for k, v in value.items():
                setattr(self.result, k, v)
            self.result.dst = publish(whole, self.dst, self.cfg.video_out.overwrite)
            self.result.chunks["rendered"] = 1
            self._remove_folder()
            self._phase("converted whole")
            self.finish()

        self.ready.append(Task(self, "convert_file", (self.src, whole, report, True), f"{self.src.name} (whole)",
                               done))

    def _find(self, k: int, first_index: int) -> None:
        out = self.folder.file(f"found_{k:04d}.pkl")
        if out.exists():
            try:
                found = load_pickle(out)
                if found.first_index == first_index or self.cfg.face.detect_every == 1:
                    self._found(k, found)
                    return
            except (OSError, EOFError, ValueError, AttributeError) as err:
                log.debug("%s: unreadable (%s); finding faces again", out, err)

        def done(_: int) -> None:
            self._found(k, load_pickle(out))

        span = self.spans[k]
        self.ready.append(Task(self, "find_faces", (self.src, span, first_index, out),
                               f"span {k} ({span.start or 0:.2f}s-)", done))

    def _found(self, k: int, found: FoundSpan) -> None:
        self.found[k] = found
        if any(f is None for f in self.found):
            return
        first, redo = 0, []
        for j, f in enumerate(self.found):
            if self.cfg.face.detect_every > 1 and f.first_index != first:
                redo.append((j, first))         # the detection cadence was guessed wrong
            first += len(f)
        if redo:
            for j, first_index in redo:
                self.found[j] = None
                self.folder.file(f"found_{j:04d}.pkl").unlink(missing_ok=True)
                self._find(j, first_index)
            return
        self._plan()

    # -- tracking and chunks ---------------------------------------------------------------

    def _plan(self) -> None:
        cfg, info = self.cfg, self.info
        self._phase("faces found")
        self.plans = track_clip(self.found, (info.width, info.height), info.fps, cfg)
        self.hists = np.concatenate([f.hists for f in self.found])
        damage = [f.damage for f in self.found if f.damage]
        self.result.damage = "; ".join(damage) if damage else None
        kept = [p for p in self.plans if p.kept]
        self.result.frames_in = len(self.plans)
        self.result.frames_out = len(kept)
        self.result.frames_with_face = sum(1 for p in kept if p.faces)
        if not kept:
            raise OutputError(f"{self.dst}: nothing to write (no frames)")
        if self.result.frames_with_face == 0:
            if cfg.no_face == "error" or cfg.paste.mode == "crop":
                raise NoFaceError(f"{self.src}: no face found in {len(self.plans)} frame(s)"
                                  + ("" if cfg.paste.mode == "crop" else " (use --no-face pass to copy it through)"))
            log.warning("%s: no face found; frames copied through unchanged", self.src)
        shots = ShotDetector(cfg.smooth.shot_threshold)
        cuts = [shots.is_cut_histogram(h) for h in self.hists]
        self.chunks = plan_chunks([p.pts for p in self.plans], [p.time for p in self.plans], cuts,
                                  self.rcfg.chunk_seconds, self.vin.start, self.vin.end)
        self.todo = []
        for chunk in self.chunks:
            segment = self.folder.segment(chunk, self.dst.suffix)
            n = sum(1 for p in self.plans[chunk.first:chunk.stop] if p.kept)
            if n == 0 or self.folder.valid_receipt(chunk, segment):
                self.result.chunks["reused"] += n > 0
                self.progress(n)
            else:
                self.todo.append(chunk)
        self.result.chunks["total"] = sum(1 for c in self.chunks if any(p.kept for p in self.plans[c.first:c.stop]))
        log.info("%s: %d frames in %d chunks, %d to render", self.src.name, len(self.plans), len(self.chunks),
                 len(self.todo))
        if not self.todo:
            self._stitch()
            return
        self._phase("tracked and planned")
        asked: dict[int, list[tuple[int, int]]] = {c.number: [] for c in self.chunks}
        starts = [c.first for c in self.chunks]
        for index, track in code_requests(self.plans, self.hists, cfg):
            asked[bisect.bisect_right(starts, index) - 1].append((index, track))
        self.codes_left = len(self.chunks)
        for chunk in self.chunks:
            out = self.folder.file(f"codes_{chunk.number:04d}.pt")
            if out.exists():
                self._coded()
                continue
            args = (self.src, chunk, self.plans[chunk.first:chunk.stop], asked[chunk.number], out)
            self.ready.append(Task(self, "code_chunk", args, self._describe(chunk), lambda _: self._coded()))

    def _describe(self, chunk: Chunk) -> str:
        return (f"chunk {chunk.number} (frames {chunk.first}-{chunk.stop - 1}, "
                f"{chunk.first_time:.2f}-{chunk.last_time:.2f}s)")

    # -- codes, smoothing, rendering -------------------------------------------------------

    def _coded(self) -> None:
        self.codes_left -= 1
        if self.codes_left:
            return
        self._phase("codes pass")
        starts = [c.first for c in self.chunks]
        cache: dict[int, dict] = {}

        def fresh(index: int, track: int) -> torch.Tensor:
            number = bisect.bisect_right(starts, index) - 1
            if number not in cache:
                if len(cache) >= 2:
                    cache.pop(next(iter(cache)))
                cache[number] = torch.load(self.folder.file(f"codes_{number:04d}.pt"), weights_only=True)
            return cache[number][(index, track)]

        todo = {c.number: c for c in self.todo}
        self.render_left = len(todo)
        collected: dict[tuple[int, int], torch.Tensor] = {}
        current = 0
        for plan, codes in final_codes(self.plans, fresh, self.hists, self.info.fps, self.cfg):
            while plan.index >= self.chunks[current].stop:
                self._submit_render(todo.get(current), collected)
                collected, current = {}, current + 1
            if current in todo:
                for face, w in zip(plan.faces, codes, strict=True):
                    collected[(plan.index, face.track_id)] = w.detach().cpu()
        while current < len(self.chunks):
            self._submit_render(todo.get(current), collected)
            collected, current = {}, current + 1
        self._phase("codes held and smoothed")

    def _submit_render(self, chunk: Chunk | None, codes: dict) -> None:
        if chunk is None:
            return
        segment = self.folder.segment(chunk, self.dst.suffix)
        n = sum(1 for p in self.plans[chunk.first:chunk.stop] if p.kept)

        report = self._watch(self.folder.file(f"progress_{chunk.number:04d}"), n)

        def done(written: int) -> None:
            if written != n:
                raise OutputError(f"{self.src}: {self._describe(chunk)}: wrote {written} of {n} frames")
            self.folder.write_receipt(chunk, segment)
            self.result.chunks["rendered"] += 1
            self._settle(report, n)
            self.render_left -= 1
            if self.render_left == 0:
                self._phase("rendered")
                self._stitch()

        args = (self.src, self.info, chunk, self.plans[chunk.first:chunk.stop], codes, segment, report)
        self.ready.append(Task(self, "render_chunk", args, self._describe(chunk), done))

    # -- stitching -------------------------------------------------------------------------

    def _stitch(self) -> None:
        segments = [self.folder.segment(c, self.dst.suffix) for c in self.chunks
                    if any(p.kept for p in self.plans[c.first:c.stop])]
        video_end = end_of_video(self.info, [p.pts for p in self.plans if p.kept], self.vin.start, self.vin.end)
        repairs: list[str] = []
        self.result.dst = stitch(segments, self.dst, self.info, self.cfg.video_out, audio_from=self.src,
                                 start=self.vin.start, end=self.vin.end, video_end=video_end, notes=repairs)
        self.result.repairs = repairs
        damage = ([self.result.damage] if self.result.damage else []) + [f"{self.src}: {r}" for r in repairs]
        self.result.damage = "; ".join(damage) if damage else None
        self._remove_folder()
        self._phase("stitched")
        self.finish()

    def _remove_folder(self) -> None:
        if not self.rcfg.keep_work:
            shutil.rmtree(self.folder.path, ignore_errors=True)
            if self.rcfg.work_dir is None:
                try:
                    self.folder.path.parent.rmdir()     # the default hidden folder, when now empty
                except OSError:
                    pass


def make_job(src: Path, dst: Path, cfg: ConvertConfig, rcfg: RayConfig, model_id: object) -> Job:
    """A :class:`PhotoJob` or a :class:`ClipJob` for ``src``."""
    if is_image_path(src):
        video_out.check_destination(dst, cfg.video_out.overwrite)
        return PhotoJob(src, dst, cfg)
    return ClipJob(src, dst, cfg, rcfg, model_id)
