"""What Blender shows: the add-on preferences, the Stylize and Cancel operators, and their entries in
the sequencer's Strip menu.

No ``from __future__ import annotations`` here: Blender reads the property annotations as objects.
"""
import os
from pathlib import Path

import bpy

from . import commands, runtime, strips
from .jobs import Job

STYLE_CODES = [
    ("first-frame", "First Frame", "One style code for the whole clip, from its first frame"),
    ("per-frame", "Per Frame", "A style code per frame (flickers)"),
    ("smoothed", "Smoothed", "Per-frame style codes smoothed over time"),
]
CODECS = [
    ("h264", "H.264 (.mp4)", "Small files, lossy"),
    ("ffv1", "FFV1 (.mkv)", "Lossless"),
    ("prores", "ProRes (.mov)", "Editing codec, 10-bit 4:2:2"),
    ("h264_nvenc", "H.264, NVIDIA NVENC (.mp4)", "Encoded on an NVIDIA GPU (other hardware: Extra Options, "
                                                 "e.g. --codec h264_qsv, or --encoder ffmpeg --codec h264_vaapi)"),
]


class FacestylePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    executable: bpy.props.StringProperty(
        name="facestyle Program", subtype="FILE_PATH",
        description="Path to the facestyle command. Empty: $FACESTYLE_EXECUTABLE, else facestyle on PATH")
    model: bpy.props.StringProperty(
        name="Model", description="Official model name (e.g. pixar) or a checkpoint path")
    output_dir: bpy.props.StringProperty(
        name="Output Folder", subtype="DIR_PATH", description="Where stylized clips go. Empty: beside the source")
    server_url: bpy.props.StringProperty(
        name="Server URL", description="A facestyle server to send clips to. Empty: convert on this computer")
    token_file: bpy.props.StringProperty(
        name="Token File", subtype="FILE_PATH", description="File holding the server's access token (optional)")
    extra_options: bpy.props.StringProperty(
        name="Extra Options", description="More convert flags, e.g. --face all --smooth-window 8")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        for name in ("executable", "model", "output_dir", "extra_options"):
            layout.prop(self, name)
        box = layout.box()
        box.label(text="Remote conversion (facestyle submit)")
        box.prop(self, "server_url")
        box.prop(self, "token_file")


def preferences(context: bpy.types.Context) -> FacestylePreferences | None:
    """The add-on's preferences; None when it was registered without being enabled (scripts, tests)."""
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def _pref(prefs: FacestylePreferences | None, name: str) -> str:
    return getattr(prefs, name, "") if prefs is not None else ""


def sequencer_scene(context: bpy.types.Context) -> bpy.types.Scene | None:
    """The scene the sequencer edits (Blender 5 lets a workspace pick one; before, the window's)."""
    return getattr(context, "sequencer_scene", None) or context.scene


def _child_env() -> dict[str, str]:
    """Blender's environment, less what points a Python at Blender's own standard library."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}


class SEQUENCER_OT_facestyle_stylize(bpy.types.Operator):
    """Stylize the faces in the selected movie strips with facestyle; the result is added as a strip above"""

    bl_idname = "sequencer.facestyle_stylize"
    bl_label = "Stylize Faces (facestyle)"
    bl_options = {"REGISTER"}

    model: bpy.props.StringProperty(
        name="Model", description="Official model name or checkpoint path. Empty: the add-on preferences")
    style_code: bpy.props.EnumProperty(name="Style Code", items=STYLE_CODES, default="smoothed")
    strength: bpy.props.FloatProperty(name="Strength", default=1.0, min=-2.0, max=2.0, soft_min=0.0,
                                      soft_max=1.0, description="How far to go towards the style")
    codec: bpy.props.EnumProperty(name="Codec", items=CODECS, default="h264")
    extra_options: bpy.props.StringProperty(
        name="Extra Options", description="More convert flags. Empty: the add-on preferences")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        scene = sequencer_scene(context)
        if scene is None or not strips.movie_targets(scene.sequence_editor):
            cls.poll_message_set("Select a movie strip")
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        jobs = runtime.registry()
        prefs = preferences(context)
        exe = commands.find_executable(_pref(prefs, "executable"), os.environ)
        model = self.model or _pref(prefs, "model")
        if jobs is None:
            return self._fail("the add-on is not registered")
        if exe is None:
            return self._fail("program not found: set it in the add-on preferences or $FACESTYLE_EXECUTABLE")
        if not model:
            return self._fail("no model: set one in the add-on preferences")
        try:
            extra = commands.split_extra(self.extra_options or _pref(prefs, "extra_options"))
        except ValueError as e:
            return self._fail(f"extra options: {e}")
        options = commands.ConvertOptions(model, self.style_code, self.strength, self.codec, extra)
        url = _pref(prefs, "server_url").strip()
        token = _pref(prefs, "token_file")
        server = commands.Server(url, bpy.path.abspath(token) if token else "") if url else None
        folder = _pref(prefs, "output_dir")
        folder = Path(bpy.path.abspath(folder)) if folder else None
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                return self._fail(f"output folder {folder}: {e.strerror or e}")

        scene = sequencer_scene(context)
        started = 0
        for strip in strips.movie_targets(scene.sequence_editor):
            src = Path(os.path.normpath(bpy.path.abspath(strip.filepath)))
            if not src.is_file():
                self.report({"WARNING"}, f"facestyle: {strip.name}: {src} not found, skipped")
                continue
            dst = commands.unique_path(commands.output_path(src, options, folder), jobs.outputs())
            cmd = commands.build_command(exe, src, dst, options, server)
            try:
                jobs.start(Job(cmd, dst, strips.Placement.of(scene.name, strip), env=_child_env()))
            except OSError as e:
                self._fail(f"cannot run {exe}: {e}")
                break
            started += 1
        if not started:
            return {"CANCELLED"}
        runtime.ensure_timer()
        self.report({"INFO"}, f"facestyle: stylizing {started} clip(s)")
        return {"FINISHED"}

    def _fail(self, message: str) -> set[str]:
        self.report({"ERROR"}, f"facestyle: {message}")
        return {"CANCELLED"}


class SEQUENCER_OT_facestyle_cancel(bpy.types.Operator):
    """Stop the running facestyle conversions (their partial outputs are removed)"""

    bl_idname = "sequencer.facestyle_cancel"
    bl_label = "Cancel facestyle"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        jobs = runtime.registry()
        return jobs is not None and bool(jobs.active())

    def execute(self, context: bpy.types.Context) -> set[str]:
        count = runtime.registry().cancel_all()
        self.report({"INFO"}, f"facestyle: cancelling {count} conversion(s)")
        return {"FINISHED"}


def draw_menu(self: bpy.types.Menu, context: bpy.types.Context) -> None:
    layout = self.layout
    layout.separator()
    layout.operator(SEQUENCER_OT_facestyle_stylize.bl_idname, icon="SHADERFX")
    jobs = runtime.registry()
    if jobs is not None and jobs.active():
        layout.operator(SEQUENCER_OT_facestyle_cancel.bl_idname, icon="CANCEL")


CLASSES = (FacestylePreferences, SEQUENCER_OT_facestyle_stylize, SEQUENCER_OT_facestyle_cancel)
