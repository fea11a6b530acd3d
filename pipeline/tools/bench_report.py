"""The benchmark's report: one row per stage, the runs alone, FLOPs and the device's peak, as an
aligned table (``facestyle bench``) or JSON (``--json``). :func:`pipeline.tools.bench.run_bench` fills it in.

Definitions (also in :class:`BenchReport`):

* ``wall``: main-thread time of the pipelined run, from the first frame asked of the chain to the
  output file in place (the ``video_out.write`` call that drives every stage).
* a stage's ``seconds``: for invert .. paste, its main-thread exclusive time (its proxy's inclusive
  time less the proxy below). Detect (face finding: detect, track, crop) and encode run in their
  own threads: their seconds are the time the main thread waited on them (for the next located
  frame; inside ``video_out.write`` but outside the stages: handing frames over, opening, flushing
  and closing the file). These six add up to ``wall``. Decode runs in its own thread too and is
  waited on by the face-finding thread: its seconds are that thread's wait.
* ``share`` = seconds / wall (the shares of detect .. encode sum to 1).
* ``fps``: invert .. paste: frames / own seconds; decode, detect and encode: throughput *alone*,
  i.e. frames / seconds of the separate decode-only, face-finding-only or encode-only run.
* ``overlap efficiency`` = max(decode alone, detect alone, encode alone, main-thread compute) /
  wall, where main-thread compute is the invert .. paste seconds of the pipelined run: 1.0 when
  the other threads hide completely behind the slowest part, lower when the main thread waits on
  them. (Compute is measured inside the pipelined run, so a slowdown from sharing cores with the
  other threads lowers throughput but not this ratio.) Run-to-run noise can put it slightly above 1.
* GFLOP/s = FLOPs of all faces processed / the stage's own seconds; FLOPs are those
  ``FlopCounterMode`` counts (convolutions and matmuls, 2 per multiply-add).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.tools.timing import PeakResult


@dataclass
class StageRow:
    """One stage: frames handed on, main-thread seconds, share of wall, frames/s (see the module doc)."""

    name: str
    frames: int
    seconds: float
    share: float
    fps: float | None
    threaded: bool = False

    def as_dict(self) -> dict:
        return {"frames": self.frames, "seconds": round(self.seconds, 5), "share": round(self.share, 5),
                "fps": _round(self.fps, 3), "fps_basis": "alone" if self.threaded else "own time",
                "main_thread": "waiting" if self.threaded else "working"}


@dataclass
class AloneRun:
    """A decode-only or encode-only run over the same number of frames."""

    frames: int
    seconds: float

    @property
    def fps(self) -> float | None:
        return self.frames / self.seconds if self.seconds > 0 else None

    def as_dict(self) -> dict:
        return {"frames": self.frames, "seconds": round(self.seconds, 5), "fps": _round(self.fps, 3)}


@dataclass
class BenchReport:
    """What :func:`run_bench` measured. Sizes are ``(w, h)``; seconds are main-thread wall seconds.

    ``invert_flops`` / ``generate_flops`` are totals over the run (``faces`` faces); the GFLOP/s
    figures divide them by the stage's own seconds. ``overlap_efficiency`` and ``slowest`` compare
    ``wall_s`` with the slowest of decode alone, detect alone, encode alone and ``compute_s``.
    """

    input: str
    output: str
    synthetic_detection: bool
    device: str
    precision: str
    batch_size: int
    generate_batch_size: int
    style_code: str
    frame_size: tuple[int, int]
    output_size: tuple[int, int]
    crop_size: tuple[int, int]
    frames_in: int
    frames_written: int
    frames_with_face: int
    faces: int
    wall_s: float
    stages: list[StageRow]
    encode_flush_s: float
    decode_alone: AloneRun
    detect_alone: AloneRun
    encode_alone: AloneRun
    invert_flops: int
    generate_flops: int
    peak_matmul: PeakResult
    peak_conv: PeakResult
    compute_s: float
    slowest: str
    overlap_efficiency: float
    crop_sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> faces, when crops differ

    def stage(self, name: str) -> StageRow:
        return next(s for s in self.stages if s.name == name)

    def gflops(self, name: str) -> float | None:
        """Achieved GFLOP/s of ``invert`` or ``generate``."""
        flops = self.invert_flops if name == "invert" else self.generate_flops
        s = self.stage(name).seconds
        return flops / s / 1e9 if s > 0 else None

    def fraction_of_conv_peak(self, name: str) -> float | None:
        g = self.gflops(name)
        return None if g is None else g / self.peak_conv.gflops

    def as_dict(self) -> dict:
        """JSON-ready."""
        per_face = {k: (round(v / self.faces) if self.faces else None)
                    for k, v in (("invert", self.invert_flops), ("generate", self.generate_flops))}
        return {
            "input": self.input, "output": self.output, "synthetic_detection": self.synthetic_detection,
            "device": self.device, "precision": self.precision,
            "batch_size": {"invert": self.batch_size, "generate": self.generate_batch_size},
            "style_code": self.style_code, "frame_size": list(self.frame_size),
            "output_size": list(self.output_size), "crop_size": list(self.crop_size),
            "generated_size": [4 * self.crop_size[0], 4 * self.crop_size[1]], "crop_sizes": dict(self.crop_sizes),
            "frames": {"in": self.frames_in, "written": self.frames_written, "with_face": self.frames_with_face,
                       "faces": self.faces},
            "wall_s": round(self.wall_s, 5),
            "stages": {s.name: s.as_dict() for s in self.stages},
            "encode_flush_s": round(self.encode_flush_s, 5),
            "decode_alone": self.decode_alone.as_dict(), "detect_alone": self.detect_alone.as_dict(),
            "encode_alone": self.encode_alone.as_dict(),
            "flops": {name: {"per_face": per_face[name], "total": total,
                             "gflops_s": _round(self.gflops(name), 3),
                             "fraction_of_conv_peak": _round(self.fraction_of_conv_peak(name), 4)}
                      for name, total in (("invert", self.invert_flops), ("generate", self.generate_flops))},
            "peak": {key: {"what": p.name, "flops": p.flops, "seconds": round(p.seconds, 6),
                           "gflops_s": round(p.gflops, 3)}
                     for key, p in (("matmul", self.peak_matmul), ("conv", self.peak_conv))},
            "overlap": {"wall_s": round(self.wall_s, 5), "compute_s": round(self.compute_s, 5),
                        "decode_alone_s": round(self.decode_alone.seconds, 5),
                        "detect_alone_s": round(self.detect_alone.seconds, 5),
                        "encode_alone_s": round(self.encode_alone.seconds, 5),
                        "slowest": self.slowest, "efficiency": round(self.overlap_efficiency, 4)},
        }

    def as_table(self) -> str:
        """Aligned text: the stage table, GFLOP/s against the peak, overlap efficiency."""
        w, h = self.crop_size
        lines = [
            f"input   {self.input} ({self.frame_size[0]}x{self.frame_size[1]}, {self.frames_in} frames"
            f"{', synthetic face detection' if self.synthetic_detection else ''}) -> {self.output}",
            f"model   crop {w}x{h} -> {4 * w}x{4 * h}, batch {self.batch_size}/{self.generate_batch_size} "
            f"(invert/generate), style codes {self.style_code}",
            f"device  {self.device}, {self.precision}",
            "",
            f"{'stage':<9}{'frames':>7}{'main s':>10}{'share':>8}{'frames/s':>11}",
        ]
        for s in self.stages:
            note = ""
            if s.name == "decode":
                note = "  alone; own thread, face finding waited"
            elif s.name == "detect":
                note = "  alone; own thread (detect, track, crop), main thread waited"
            elif s.name == "encode":
                note = f"  alone; own thread, main thread waited (flush at the end {self.encode_flush_s:.3f} s)"
            elif s.frames == 0 and s.seconds == 0:
                note = "  (off)"
            lines.append(f"{s.name:<9}{s.frames:>7}{s.seconds:>10.3f}{100 * s.share:>7.1f}%{_fmt(s.fps, 11)}{note}")
        total_fps = self.frames_written / self.wall_s if self.wall_s > 0 else None
        lines += [f"{'total':<9}{self.frames_written:>7}{self.wall_s:>10.3f}{100.0:>7.1f}%{_fmt(total_fps, 11)}", ""]
        for name in ("invert", "generate"):
            flops = self.invert_flops if name == "invert" else self.generate_flops
            per_face = flops / self.faces / 1e9 if self.faces else 0.0
            frac = self.fraction_of_conv_peak(name)
            lines.append(f"{name:<9}{_fmt(self.gflops(name), 10, 2)} GFLOP/s  ({per_face:.3f} GFLOP/face)"
                         f"  = {'-' if frac is None else f'{100 * frac:.1f}%'} of conv peak")
        for p in (self.peak_matmul, self.peak_conv):
            lines.append(f"{'peak':<9}{p.gflops:>10.2f} GFLOP/s  ({p.name}, best of the probe)")
        slowest_s = max(self.decode_alone.seconds, self.detect_alone.seconds, self.encode_alone.seconds, self.compute_s)
        lines += ["", f"overlap  wall {self.wall_s:.3f} s; slowest alone: {self.slowest} {slowest_s:.3f} s "
                      f"(decode {self.decode_alone.seconds:.3f}, detect {self.detect_alone.seconds:.3f}, "
                      f"encode {self.encode_alone.seconds:.3f}, "
                      f"compute {self.compute_s:.3f}) -> efficiency {self.overlap_efficiency:.2f}"]
        return "\n".join(lines)


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(v, digits)


def _fmt(v: float | None, width: int, digits: int = 1) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.{digits}f}"
