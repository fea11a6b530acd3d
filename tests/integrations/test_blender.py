"""The Blender VSE add-on (integrations/blender/facestyle_vse), driven headless by Blender's own Python
(the ``bpy`` module from PyPI): it runs ``facestyle`` in the background and lines the stylized clip up
above the source strip. Its plain-Python parts (command lines, channel choice) are also tested here.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from pipeline import make_random_checkpoint, save_checkpoint
from tests.clips import face_clip

REPO = Path(__file__).resolve().parents[2]
ADDON_ROOT = REPO / "integrations" / "blender"
ADDON = ADDON_ROOT / "facestyle_vse"


def _load(name: str):
    """A bpy-free module of the add-on, loaded by path (importing the package would import bpy)."""
    spec = importlib.util.spec_from_file_location(f"_facestyle_vse_{name}", ADDON / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                       # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _load_make_zip():
    spec = importlib.util.spec_from_file_location("_facestyle_make_zip", ADDON_ROOT / "make_zip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- without Blender

def test_make_zip_has_the_addon_folder_at_its_root(tmp_path):
    proc = subprocess.run([sys.executable, str(ADDON_ROOT / "make_zip.py"), "-o", str(tmp_path / "a.zip")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        names = zf.namelist()
        manifest = zf.read("facestyle_vse/blender_manifest.toml").decode()
    assert {n.split("/")[0] for n in names} == {"facestyle_vse"}
    assert {"facestyle_vse/__init__.py", "facestyle_vse/blender_manifest.toml"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert 'id = "facestyle_vse"' in manifest and 'version = "0.1.0"' in manifest


def test_command_lines_and_output_names(tmp_path):
    commands = _load("commands")
    extra = commands.split_extra("--face all --output-mode crop --codec=prores -q --smooth-window '8'")
    assert extra == ("--face", "all", "--codec=prores", "--smooth-window", "8")
    options = commands.ConvertOptions("/ckpt/toon.pt", "per-frame", 0.800000011920929, "h264", extra)
    src = tmp_path / "take 1.mp4"
    dst = commands.output_path(src, options)
    assert dst == tmp_path / "take 1_toon.mov"                      # the last --codec picks the container
    dst.write_bytes(b"")
    assert commands.unique_path(dst, {tmp_path / "take 1_toon_1.mov"}) == tmp_path / "take 1_toon_2.mov"
    assert commands.build_command("fs", src, dst, options) == [
        "fs", "convert", str(src), "-o", str(dst), "--model", "/ckpt/toon.pt", "--style-code", "per-frame",
        "--strength", "0.8", "--codec", "h264", *extra, "--progress", "json"]
    remote = commands.build_command("fs", src, dst, options, commands.Server("http://h:8000", "/t"))
    assert remote[1] == "submit" and remote[-7:] == ["--server", "http://h:8000", "--token-file", "/t", "--wait",
                                                     "--progress", "json"]
    assert commands.output_path(src, commands.ConvertOptions("pixar", codec="ffv1")).name == "take 1_pixar.mkv"
    assert commands.parse_event('{"event": "progress", "frame": 3}\n') == {"event": "progress", "frame": 3}
    assert commands.parse_event("loading model...") is None and commands.parse_event("{oops") is None
    assert commands.error_line(["warn", "facestyle: error: x.pt: not a checkpoint", "bye"], 3) == \
        "facestyle: error: x.pt: not a checkpoint"
    assert commands.error_line([], -9) == "facestyle exited with code -9"


def test_free_channel_is_the_lowest_one_clear_of_the_range():
    strips = _load("strips")
    s = [SimpleNamespace(channel=c, frame_final_start=a, frame_final_end=b)
         for c, a, b in [(2, 10, 20), (3, 20, 30), (4, 0, 11), (5, 19, 21)]]
    assert strips.free_channel_above(s, 2, 10, 20) == 3                # [20, 30) touches but does not overlap
    assert strips.free_channel_above(s, 3, 10, 20) == 6
    assert strips.free_channel_above(s, 2, 25, 26) == 4
    assert strips.free_channel_above(s, 128, 0, 1) is None


# ---------------------------------------------------------------- in Blender's Python

DRIVER = textwrap.dedent('''
    """Drives the add-on headless: argv[1] is a JSON config; prints RESULT <json> last."""
    import json
    import sys
    import time

    cfg = json.load(open(sys.argv[1]))
    sys.path.insert(0, cfg["addon_root"])
    import bpy
    import facestyle_vse

    out = {"version": bpy.app.version_string}


    def info(s):
        keys = ("name", "filepath", "channel", "frame_start", "frame_final_start", "frame_final_end",
                "frame_final_duration", "frame_offset_start", "frame_offset_end")
        return {k: getattr(s, k) for k in keys}


    def finish():
        print("RESULT " + json.dumps(out))
        sys.exit(0)


    if cfg["case"] == "register":
        rounds = []
        for _ in range(2):
            facestyle_vse.register()
            on = (hasattr(bpy.types, "SEQUENCER_OT_facestyle_stylize"), facestyle_vse.registry() is not None,
                  facestyle_vse.ui.draw_menu in getattr(bpy.types.SEQUENCER_MT_strip.draw, "_draw_funcs", []))
            facestyle_vse.unregister()
            off = (hasattr(bpy.types, "SEQUENCER_OT_facestyle_stylize"), facestyle_vse.registry() is not None,
                   facestyle_vse.ui.draw_menu in getattr(bpy.types.SEQUENCER_MT_strip.draw, "_draw_funcs", []))
            rounds.append([on, off])
        out["rounds"] = rounds
        finish()

    if cfg["case"] == "install":             # as Blender 4.2+ users do: Install from Disk, enable, disable
        import addon_utils

        out["install"] = sorted(bpy.ops.extensions.package_install_files(
            filepath=cfg["zip"], repo="user_default", enable_on_install=True))
        names = [k for k in bpy.context.preferences.addons.keys() if k.endswith("facestyle_vse")]
        out["addons"] = names
        if names:
            module = sys.modules[names[0]]
            prefs = bpy.context.preferences.addons[names[0]].preferences
            out["enabled"] = [type(prefs).__name__, module.registry() is not None,
                              hasattr(bpy.types, "SEQUENCER_OT_facestyle_stylize")]
            addon_utils.disable(names[0])
            out["disabled"] = [module.registry() is not None, hasattr(bpy.types, "SEQUENCER_OT_facestyle_stylize")]
        finish()

    bpy.ops.wm.read_factory_settings(use_empty=True)
    facestyle_vse.register()
    if cfg.get("prefs"):
        bpy.context.preferences.addons.new().module = "facestyle_vse"
        prefs = bpy.context.preferences.addons["facestyle_vse"].preferences
        for key, value in cfg["prefs"].items():
            setattr(prefs, key, value)
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    original = strips.new_movie(name="face", filepath=cfg["clip"], channel=2, frame_start=10)
    original.frame_offset_start = 1
    later = strips.new_movie(name="later", filepath=cfg["clip"], channel=3, frame_start=200)  # channel 3 is free
    later.select = False
    original.select = True
    editor.active_strip = original
    out["original"] = info(original)
    out["poll"] = bpy.ops.sequencer.facestyle_stylize.poll()
    out["op"] = sorted(bpy.ops.sequencer.facestyle_stylize(**cfg["op"]))
    jobs = facestyle_vse.registry()
    deadline = time.monotonic() + 500
    cancelled = False
    while facestyle_vse.tick() is not None and time.monotonic() < deadline:
        if cfg["case"] == "cancel" and not cancelled and any(j.frame for j in jobs.jobs):
            out["files_at_cancel"] = sorted(p.name for p in jobs.jobs[0].dst.parent.iterdir())
            out["cancel_op"] = sorted(bpy.ops.sequencer.facestyle_cancel())
            cancelled = True
        time.sleep(0.05)
    out["history"] = jobs.history
    out["strips"] = [info(s) for s in strips]
    added = strips.get("face (facestyle)")
    out["added"] = info(added) if added is not None else None
    facestyle_vse.unregister()
    finish()
''')


def _blender_python() -> Path:
    env = os.environ.get("FACESTYLE_BLENDER_PYTHON")
    return Path(env) if env else REPO / ".hosts" / "blender" / "bin" / "python"


@pytest.fixture(scope="module")
def blender_python():
    exe = _blender_python()
    note_file = REPO / ".hosts" / "blender.unavailable"
    note = f" ({note_file.read_text().strip()})" if note_file.is_file() else ""
    if not exe.exists():
        pytest.skip(f"no Blender Python at {exe}: set FACESTYLE_BLENDER_PYTHON, or make a Python 3.11 venv "
                    f"there with 'pip install bpy'{note}")
    proc = subprocess.run([str(exe), "-c", "import bpy; print(bpy.app.version_string)"], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"{exe}: 'import bpy' failed: {last}{note}")
    return exe


@pytest.fixture(scope="module")
def work(tmp_path_factory, media_dir):
    """The facestyle program, a tiny random checkpoint and short face clips (6 and 100 frames)."""
    root = tmp_path_factory.mktemp("blender")
    script = Path(sys.executable).parent / "facestyle"
    probe = subprocess.run([str(script), "--help"], capture_output=True, cwd=root, timeout=120) \
        if script.is_file() else None
    if probe is not None and probe.returncode == 0:
        program = script
    else:                                  # console script missing or broken: run cli.py with this Python
        program = root / "facestyle"
        program.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO / "cli.py"}" "$@"\n')
        program.chmod(0o755)
    clips = root / "clips"
    clips.mkdir()
    photo = media_dir / "ILip77SbmOE.png"
    return SimpleNamespace(root=root, program=program,
                           model=save_checkpoint(make_random_checkpoint("tiny", 3), root / "tiny.pt"),
                           clip=face_clip(photo, clips / "face.mp4", 6, audio=False, width=320),
                           long_clip=face_clip(photo, root / "long.mp4", 100, audio=False, width=320))


def _drive(blender_python, folder: Path, name: str, program: Path | None = None, env: dict | None = None,
           **cfg) -> dict:
    """Run the driver with config ``cfg`` in Blender's Python; its RESULT dict, plus its stderr."""
    config = folder / f"{name}.json"
    config.write_text(json.dumps({"addon_root": str(ADDON_ROOT), **cfg}))
    driver = folder / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(folder / "blender-user"), **(env or {})}  # not ~/.config
    if program is not None:
        env["FACESTYLE_EXECUTABLE"] = str(program)
    proc = subprocess.run([str(blender_python), str(driver), str(config)], capture_output=True, text=True,
                          timeout=600, cwd=folder, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    result = json.loads(lines[-1][len("RESULT "):])
    result["stderr"] = proc.stderr
    return result


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def test_stylize_adds_an_aligned_strip_with_what_convert_writes(blender_python, work):
    taken = work.clip.with_name("face_tiny.mkv")
    taken.write_bytes(b"")                              # the add-on must not overwrite it: it picks _1
    try:
        result = _drive(blender_python, work.root, "stylize", work.program, case="stylize", clip=str(work.clip),
                        prefs={"model": str(work.model)}, op={"codec": "ffv1"})
    finally:
        taken.unlink()
    print("Blender", result["version"])
    assert result["poll"] and result["op"] == ["FINISHED"], result
    [job] = result["history"]
    assert job["state"] == "done", job
    expected = work.clip.with_name("face_tiny_1.mkv")
    added, original = result["added"], result["original"]
    assert added is not None, result
    assert Path(added["filepath"]) == expected and expected.is_file()
    assert added["name"] == "face (facestyle)" and job["strip"] == added["name"]
    assert added["channel"] == original["channel"] + 1 == 3
    for key in ("frame_start", "frame_offset_start", "frame_offset_end", "frame_final_start", "frame_final_duration"):
        assert added[key] == original[key], (key, added, original)

    direct = work.root / "direct.mkv"
    proc = subprocess.run([str(work.program), "convert", str(work.clip), "-o", str(direct), "--model",
                           str(work.model), "--codec", "ffv1", "--progress", "json"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    ours, theirs = _frames(expected), _frames(direct)
    assert ours.shape == theirs.shape and ours.shape[0] == 6
    np.testing.assert_array_equal(ours, theirs)


def test_failed_conversion_adds_nothing_and_reports_the_error(blender_python, work):
    missing = work.root / "no such model.pt"
    result = _drive(blender_python, work.root, "fail", work.program, case="fail", clip=str(work.clip),
                    op={"model": str(missing), "codec": "ffv1"})
    assert result["op"] == ["FINISHED"], result              # the job started; it fails in the background
    [job] = result["history"]
    assert job["state"] == "failed" and job["strip"] is None
    assert job["error"].startswith("facestyle: error:") and "no such model" in job["error"], job
    assert job["error"] in result["stderr"]                    # told on Blender's console too
    assert result["added"] is None and len(result["strips"]) == 2
    assert not list(work.clip.parent.glob("*face_no such model*"))


def test_cancel_stops_the_run_and_leaves_no_file(blender_python, work):
    out = work.root / "cancelled"
    out.mkdir()
    result = _drive(blender_python, work.root, "cancel", work.program, clip=str(work.long_clip), case="cancel",
                    prefs={"model": str(work.model), "output_dir": str(out)}, op={})
    assert result.get("cancel_op") == ["FINISHED"], result
    assert [n for n in result["files_at_cancel"] if ".partial" in n], result   # it was cancelled mid-write
    [job] = result["history"]
    assert job["state"] == "cancelled" and job["strip"] is None, job
    assert result["added"] is None
    assert list(out.iterdir()) == []                          # facestyle removed its partial file


def test_register_unregister_twice(blender_python, tmp_path):
    result = _drive(blender_python, tmp_path, "register", case="register")
    assert result["rounds"] == [[[True, True, True], [False, False, False]]] * 2, result


def test_zip_installs_and_enables_as_an_extension(blender_python, tmp_path):
    zip_path = _load_make_zip().make_zip(tmp_path / "facestyle_vse.zip")
    result = _drive(blender_python, tmp_path, "install", case="install", zip=str(zip_path))
    assert result["install"] == ["FINISHED"] and result["addons"] == ["bl_ext.user_default.facestyle_vse"], result
    assert result["enabled"] == ["FacestylePreferences", True, True] and result["disabled"] == [False, False]
