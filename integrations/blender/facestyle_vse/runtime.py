"""The UI side of running jobs: the one job registry (made by ``register()``, dropped by
``unregister()``), and :func:`tick`, the ``bpy.app.timers`` function that advances jobs, shows their
progress and turns finished ones into strips or error messages.
"""
import sys

import bpy

from . import strips
from .jobs import Job, JobRegistry

POLL_S = 0.25                  # timer interval while jobs run
MESSAGE_S = 8.0                # how long a final message stays in the status bar

_registry: JobRegistry | None = None


def registry() -> JobRegistry | None:
    """The add-on's job registry; None while the add-on is not registered."""
    return _registry


def open_registry() -> JobRegistry:
    global _registry
    if _registry is None:
        _registry = JobRegistry()
    return _registry


def close_registry() -> None:
    """Interrupt running jobs (facestyle removes partial files), stop the timers, drop the registry."""
    global _registry
    for fn in (tick, clear_status):
        if bpy.app.timers.is_registered(fn):
            bpy.app.timers.unregister(fn)
    if _registry is not None:
        _registry.close()
        _registry = None
    _set_status(None)
    _progress_end()


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=POLL_S, persistent=True)


def tick() -> float | None:
    """Advance the jobs: apply their progress events, add the strips of finished ones. Returns the
    delay to the next call, or None (timer stops) when nothing runs. Headless scripts call it in a loop."""
    jobs = _registry
    if jobs is None:
        return None
    finished = jobs.poll()
    messages = [_finish(jobs, job) for job in finished]
    active = jobs.active()
    if active:
        _show_progress(active)
    else:
        _progress_end()
        if messages:
            _set_status("facestyle: " + "; ".join(messages))
            if bpy.app.timers.is_registered(clear_status):
                bpy.app.timers.unregister(clear_status)
            bpy.app.timers.register(clear_status, first_interval=MESSAGE_S)
        elif finished:
            _set_status(None)
    if finished or active:
        _redraw_sequencers()
    return POLL_S if active else None


def clear_status() -> None:
    _set_status(None)


def _finish(jobs: JobRegistry, job: Job) -> str:
    """Add the strip of a finished job, or report why not; record it in the history. Returns a message."""
    where: strips.Placement = job.target
    if job.state != "done":
        jobs.record(job, strip=None)
        if job.state == "failed":
            _report_error(f"{job.name}: {job.error}")
        return f"{job.name}: {job.error}"
    scene = bpy.data.scenes.get(where.scene)
    editor = scene.sequence_editor if scene is not None else None
    if editor is None:
        error = f"scene {where.scene!r} or its sequencer is gone; the clip is at {job.dst}"
    else:
        try:
            strip = strips.add_aligned_movie(editor, where, str(job.dst))
        except (LookupError, RuntimeError) as e:
            error = f"{e}; the clip is at {job.dst}"
        else:
            jobs.record(job, strip=strip.name, channel=strip.channel)
            print(f"facestyle: added {strip.name!r} on channel {strip.channel} ({job.dst})")
            return f"added {strip.name}"
    job.error = error
    jobs.record(job, strip=None)
    _report_error(f"{job.name}: {error}")
    return f"{job.name}: {error}"


def _show_progress(active: list[Job]) -> None:
    job = active[0]
    text = f"facestyle: {job.name} {job.frame}/{job.total or '?'} frames"
    if job.fps:
        text += f", {job.fps:.1f} frames/s"
    if job.eta_s is not None:
        text += f", {job.eta_s:.0f} s left"
    if len(active) > 1:
        text += f" (+{len(active) - 1} more)"
    _set_status(text + " - Strip > Cancel facestyle to stop")
    fractions = [j.fraction or 0.0 for j in active]
    for wm in _window_managers():
        wm.progress_begin(0.0, 1.0)    # idempotent while a progress is shown
        wm.progress_update(sum(fractions) / len(fractions))


def _redraw_sequencers() -> None:
    for wm in bpy.data.window_managers:
        for window in wm.windows:
            for area in window.screen.areas if window.screen is not None else ():
                if area.type == "SEQUENCE_EDITOR":
                    area.tag_redraw()


def _window_managers() -> list:
    """Window managers with a window (none in background mode: the cursor progress needs one)."""
    if bpy.app.background:
        return []
    return [wm for wm in bpy.data.window_managers if len(wm.windows)]


def _progress_end() -> None:
    for wm in _window_managers():
        wm.progress_end()


def _set_status(text: str | None) -> None:
    """The text in the status bar of every window's workspace (None restores the default)."""
    for wm in bpy.data.window_managers:
        for window in wm.windows:
            workspace = getattr(window, "workspace", None)
            if workspace is not None:
                workspace.status_text_set(text)


def _report_error(text: str) -> None:
    """A failed job: printed to Blender's console, and a popup where there is a window."""
    print(f"facestyle: failed: {text}", file=sys.stderr)
    for wm in _window_managers():
        try:                           # a nicety: it must not stop the timer that runs the other jobs
            with bpy.context.temp_override(window=wm.windows[0]):
                wm.popup_menu(lambda menu, _context: menu.layout.label(text=text), title="facestyle failed",
                              icon="ERROR")
        except (RuntimeError, TypeError, AttributeError):
            pass
        break
