"""facestyle for Blender's Video Sequence Editor: Strip > Stylize Faces (facestyle) runs the
``facestyle`` command on the selected movie strips in the background and adds each stylized clip as a
strip lined up above its source. Strip > Cancel facestyle stops them.

The add-on never imports facestyle or torch (Blender's Python is another interpreter): it runs the
command line and reads its JSON progress lines (see :mod:`.commands` and :mod:`.jobs`). Blender's
timers call :func:`tick`; headless scripts, where timers never fire, call it in a loop.
"""
import bpy

from . import runtime, ui
from .runtime import registry, tick

__all__ = ["register", "registry", "tick", "unregister"]

# for "Install legacy add-on" in Blender before 4.2; 4.2+ reads blender_manifest.toml
bl_info = {
    "name": "facestyle",
    "author": "facestyle developers",
    "version": (0, 1, 0),
    "blender": (3, 6, 0),
    "location": "Video Sequencer > Strip > Stylize Faces (facestyle)",
    "description": "Stylize faces in movie strips with StyleGANEX models via the facestyle command",
    "category": "Sequencer",
}


def register() -> None:
    for cls in ui.CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.SEQUENCER_MT_strip.append(ui.draw_menu)
    runtime.open_registry()


def unregister() -> None:
    runtime.close_registry()
    bpy.types.SEQUENCER_MT_strip.remove(ui.draw_menu)
    for cls in reversed(ui.CLASSES):
        bpy.utils.unregister_class(cls)
