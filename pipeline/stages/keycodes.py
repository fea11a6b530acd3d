"""Key codes with interpolation: the codes pass of ``--code-every N`` (N > 1) in the per-frame modes.

The encoder's codes pass at 256x256 costs more than the rest of the model at a 128x128 crop, so with
``code_every = N`` it runs only on *key* faces:

* a track's first face of a segment (its first frame, the first frame after it was lost for a frame,
  the first frame of a shot);
* every face on a frame whose index is a multiple of N;
* a segment's last face (the frame before the track is missing, before a shot change, the clip's
  last frame).

Each face between two keys of its segment gets the codes linearly interpolated between them by frame
index, so the smooth stage filters a continuous curve rather than steps (with the Gaussian filter its
look-ahead of ``window`` frames already reaches the next key when N <= window). Faces that
:func:`pipeline.stages.detect_crop.locate` cut no aligned face for (segment ends, restarts) are
aligned here from the frame's pixels and landmarks, exactly as face finding would have; on the
device route (:class:`~pipeline.records.UncutFace`) every key face is cut on the model's device,
as the plain codes pass cuts them (:func:`pipeline.runtime.batch.face_images`).

The stage streams: a face waits for its segment's next key (at most N frames, or the end of the
segment, which is known one frame later), and keys are encoded ``batch_size`` at a time, so it holds
at most about ``batch_size x N`` records.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from pipeline.face.align import align_face
from pipeline.model import StyleGANEX
from pipeline.records import Coded, FaceCrop, Located, UncutFace
from pipeline.runtime.batch import face_images, to_images

Cut = Callable[[Located], bool]

# The default N per device type, chosen by measurement (README, "Key codes"): on a CPU the codes pass
# is most of the cost at small crops; on CUDA it stays 1 (not measured there: no GPU was available).
DEFAULT_CODE_EVERY = {"cpu": 8}


def default_code_every(device: torch.device | str) -> int:
    """``--code-every`` when not given: :data:`DEFAULT_CODE_EVERY` for the device's type, else 1."""
    return DEFAULT_CODE_EVERY.get(torch.device(device).type, 1)


@dataclass(eq=False)
class _Slot:
    """One face of one record: its place in its track and, once known, its codes."""

    index: int
    key: bool
    aligned: np.ndarray | None = None
    uncut: tuple[Located, FaceCrop] | None = None     # device route: cut on the device when encoded
    codes: Tensor | None = None
    queued: bool = False


@dataclass(eq=False)
class _Entry:
    record: Located
    shot: int
    slots: dict[int, _Slot] = field(default_factory=dict)      # track -> slot, in face order

    def done(self) -> bool:
        return all(s.codes is not None for s in self.slots.values())


def _key_images(slots: Sequence[_Slot], device: torch.device, dtype: torch.dtype) -> Tensor:
    """The aligned faces of ``slots`` as model inputs, in order: host pictures go up as they are,
    the device route's faces are cut on ``device``."""
    if all(s.uncut is None for s in slots):
        return to_images([s.aligned for s in slots], device, dtype)
    if all(s.uncut is not None for s in slots):
        return face_images([s.uncut for s in slots], "aligned", device, dtype)
    return torch.cat([_key_images([s], device, dtype) for s in slots])


def interpolate(a: Tensor, b: Tensor, t: float) -> Tensor:
    """``a + t (b - a)`` computed in float32, returned in ``a``'s dtype (W+ codes ``[1, 18, D]``)."""
    a32 = a.float()
    return (a32 + (b.float() - a32) * t).to(a.dtype)


def key_codes(items: Iterable[Located], model: StyleGANEX, every: int, batch_size: int = 1, *,
              cut: Cut | None = None) -> Iterator[Coded]:
    """W+ codes of every face, from key faces only (see the module docstring).

    Args:
        items: located frames in order.
        model: the model whose codes pass runs.
        every: N >= 1 (1 makes every face a key: per-frame codes).
        batch_size: key faces per encoder call (at most).
        cut: ``cut(rec)`` is True when ``rec`` starts a new shot (default: never).
    """
    if every < 1 or batch_size < 1:
        raise ValueError("every and batch_size must be >= 1")
    device, dtype = model.latent_avg.device, model.latent_avg.dtype
    pending: deque[_Entry] = deque()
    open_: dict[tuple[int, int], list[_Slot]] = {}   # (track, segment) -> its slots from the last encoded key on
    segment: dict[int, int] = {}                      # track -> its current segment's number
    todo: list[_Slot] = []
    prev: _Entry | None = None
    shot = 0

    def mark_key(entry: _Entry, track: int) -> None:
        slot = entry.slots[track]
        if not slot.key:
            slot.key = True
        if slot.aligned is None and slot.uncut is None:
            face = next(f for f in entry.record.faces if f.track_id == track)
            if isinstance(face, UncutFace):
                slot.uncut = (entry.record, face)
            else:
                slot.aligned = (face.aligned if face.aligned is not None
                                else align_face(entry.record.frame.pixels, face.landmarks))
        if not slot.queued:
            slot.queued = True
            todo.append(slot)

    @torch.inference_mode()
    def encode() -> None:
        for start in range(0, len(todo), batch_size):
            part = todo[start:start + batch_size]
            w = model.codes(_key_images(part, device, dtype))
            for j, s in enumerate(part):
                s.codes, s.aligned, s.uncut = w[j:j + 1], None, None
        todo.clear()
        for seg, slots in list(open_.items()):
            anchor = None
            for i, s in enumerate(slots):
                if not (s.key and s.codes is not None):
                    continue
                if anchor is not None:
                    a = slots[anchor]
                    for m in slots[anchor + 1:i]:
                        m.codes = interpolate(a.codes, s.codes, (m.index - a.index) / (s.index - a.index))
                anchor = i
            if anchor is not None:
                open_[seg] = slots[anchor:]
            if seg[1] != segment.get(seg[0]) and anchor == len(slots) - 1:
                del open_[seg]                   # an ended segment, all its faces resolved

    def ready() -> Iterator[Coded]:
        while pending and pending[0].done():
            e = pending.popleft()
            yield Coded(e.record, [e.slots[f.track_id].codes for f in e.record.faces])

    for rec in items:
        if cut is not None and cut(rec) and prev is not None:     # cut() sees every frame, in order
            shot += 1
        entry = _Entry(rec, shot)
        tracks = {f.track_id for f in rec.faces}
        if prev is not None:                     # the previous frame's faces that end a segment
            for track in prev.slots:
                if track not in tracks or prev.shot != shot:
                    mark_key(prev, track)
        for face in rec.faces:
            t = face.track_id
            starts = prev is None or t not in prev.slots or prev.shot != shot
            slot = _Slot(rec.frame.index, False, face.cut("aligned"))
            entry.slots[t] = slot
            if starts:
                segment[t] = segment.get(t, -1) + 1
            open_.setdefault((t, segment[t]), []).append(slot)
            if starts or rec.frame.index % every == 0:
                mark_key(entry, t)
        pending.append(entry)
        prev = entry
        if len(todo) >= batch_size:
            encode()
        yield from ready()
    if prev is not None:
        for track in prev.slots:
            mark_key(prev, track)
    encode()
    yield from ready()
    if pending:                                  # cannot happen: every segment ends on an encoded key
        raise AssertionError("key codes left faces without codes")


def key_faces(tracks: Sequence[Collection[int]], indices: Sequence[int], every: int,
              cuts: Sequence[bool]) -> list[set[int]]:
    """Which faces :func:`key_codes` encodes, for a runner that plans a whole clip at once (the Ray
    runner): per frame, the track ids whose face is a key. ``tracks[k]``: the tracks on the k-th
    frame, ``indices[k]`` its frame index, ``cuts[k]``: it starts a new shot."""
    keys: list[set[int]] = []
    for k, here in enumerate(tracks):
        before = tracks[k - 1] if k and not cuts[k] else ()
        after = tracks[k + 1] if k + 1 < len(tracks) and not cuts[k + 1] else ()
        keys.append({t for t in here if t not in before or t not in after or indices[k] % every == 0})
    return keys


def fill_between(codes: Sequence[dict[int, Tensor | None]], indices: Sequence[int]) -> list[dict[int, Tensor]]:
    """Codes of every face from those of the key faces (the others None), interpolated as
    :func:`key_codes` does; ``codes`` must come from :func:`key_faces`' choice."""
    out = [dict(c) for c in codes]
    last: dict[int, int] = {}                      # track -> position of its last key
    for k, frame in enumerate(codes):
        for t, w in frame.items():
            if w is None:
                continue
            a = last.get(t)
            if a is not None and all(t in codes[m] for m in range(a, k)):
                for m in range(a + 1, k):
                    frac = (indices[m] - indices[a]) / (indices[k] - indices[a])
                    out[m][t] = interpolate(out[a][t], w, frac)
            last[t] = k
    return out
