"""Which strips to stylize and where the stylized clip goes: a new movie strip with the original's
start and trims, on the lowest free channel above it. Works on Blender 4.2 to 5.x (4.4 renamed
``sequence_editor.sequences`` to ``.strips``).
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_CHANNEL = 128              # Blender's last sequencer channel
SUFFIX = " (facestyle)"


def top_level(editor: object) -> object:
    """The editor's top-level strip collection (``strips`` since 4.4, ``sequences`` before)."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def movie_targets(editor: object | None) -> list:
    """The selected top-level movie strips, plus the active strip when it is a top-level movie strip."""
    if editor is None:
        return []
    strips = list(top_level(editor))
    chosen = [s for s in strips if s.type == "MOVIE" and s.select]
    active = editor.active_strip
    if active is not None and active.type == "MOVIE" and active not in chosen and active in strips:
        chosen.insert(0, active)
    return chosen


@dataclass(frozen=True)
class Placement:
    """Where a strip sits, taken when its job starts (the strip may be moved or deleted meanwhile)."""

    scene: str
    name: str
    channel: int
    frame_start: float
    frame_offset_start: float
    frame_offset_end: float
    frame_final_start: int
    frame_final_end: int

    @classmethod
    def of(cls, scene_name: str, strip: object) -> Placement:
        return cls(scene_name, strip.name, strip.channel, strip.frame_start, strip.frame_offset_start,
                   strip.frame_offset_end, strip.frame_final_start, strip.frame_final_end)


def free_channel_above(strips: object, channel: int, start: int, end: int, ignore: object = None) -> int | None:
    """The lowest channel above ``channel`` with no strip overlapping frames [start, end); None if full."""
    busy = {s.channel for s in strips
            if s != ignore and s.frame_final_start < end and s.frame_final_end > start}
    return next((c for c in range(channel + 1, MAX_CHANNEL + 1) if c not in busy), None)


def add_aligned_movie(editor: object, where: Placement, filepath: str) -> object:
    """Add ``filepath`` as a movie strip lined up with the original: same start and trims, the original's
    transform and crop, named ``<original> (facestyle)``, on the lowest free channel above it. The
    original's current position is used if it still exists, else ``where``.

    Raises:
        LookupError: no free channel above the original.
        RuntimeError: Blender could not open the clip.
    """
    strips = top_level(editor)
    original = strips.get(where.name)
    if original is not None:
        where = Placement.of(where.scene, original)
    channel = free_channel_above(strips, where.channel, where.frame_final_start, where.frame_final_end)
    if channel is None:
        raise LookupError(f"no free channel above channel {where.channel} for frames "
                          f"{where.frame_final_start}-{where.frame_final_end}")
    strip = strips.new_movie(name=where.name + SUFFIX, filepath=filepath, channel=channel,
                             frame_start=int(where.frame_start))
    strip.frame_start = where.frame_start
    strip.frame_offset_start = where.frame_offset_start
    strip.frame_offset_end = where.frame_offset_end
    if strip.channel != channel:       # moved up while untrimmed it overlapped a neighbour; now it fits
        strip.channel = channel
    if original is not None:
        _copy_look(original, strip)
    return strip


def _copy_look(src: object, dst: object) -> None:
    """The placement on screen: transform, crop and flips (the stylized clip has the source's size)."""
    for group, names in (("transform", ("offset_x", "offset_y", "scale_x", "scale_y", "rotation", "origin")),
                         ("crop", ("min_x", "max_x", "min_y", "max_y"))):
        a, b = getattr(src, group, None), getattr(dst, group, None)
        if a is None or b is None:
            continue
        for name in names:
            if hasattr(a, name):
                setattr(b, name, getattr(a, name))
    for name in ("use_flip_x", "use_flip_y"):
        if hasattr(src, name):
            setattr(dst, name, getattr(src, name))
