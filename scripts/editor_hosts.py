"""Set up the editor hosts the integration tests run in, beside the checkout in ``.hosts/``:

* ``.hosts/blender``: a Python 3.11 environment with Blender as a module (``pip install bpy``),
  for the Blender VSE add-on. It does not get facestyle: the add-on runs the ``facestyle`` command.
* ``.hosts/vapoursynth``: a Python >= 3.12 environment (VapourSynth's wheels need 3.12) with
  ``vapoursynth`` (the engine and ``vspipe`` are in the wheel) and facestyle installed, since a
  VapourSynth filter runs inside the host's Python. PyTorch comes from PyPI there (a CUDA build;
  it runs on the CPU too): the pinned CPU wheel exists for Python 3.11 only.

Usage: ``python scripts/editor_hosts.py [blender] [vapoursynth]`` (both by default). Each host is
made once (a stamp file records the requirements it was made for) and remade when they change.
A host that cannot be made leaves ``.hosts/<name>.unavailable`` with the reason, which the tests
report when they skip; this script then still exits 0 so the rest of the test run goes on.
With the VapourSynth host (a CUDA torch) it then runs ``scripts/build_kernels.py``: the CUDA
extension built ahead of time, cached by a hash of its sources (about a minute the first time).
Last, it makes sure a system ffmpeg is there for the ``--encoder ffmpeg`` tests (Debian's, with
apt-get, when running as root).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOSTS = REPO / ".hosts"
REQUIREMENTS = {
    "blender": ["bpy>=4.2"],
    "vapoursynth": ["vapoursynth>=74", "-e", str(REPO)],
}


def _runs(python: str, minimum: tuple[int, int], maximum: tuple[int, int] | None) -> bool:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if out.returncode != 0:
        return False
    version = tuple(int(v) for v in out.stdout.split())
    return version >= minimum and (maximum is None or version <= maximum)


def find_python(minimum: tuple[int, int], maximum: tuple[int, int] | None = None) -> str | None:
    """An interpreter within the versions: this one, ``python3.X`` on PATH, or one installed by pyenv."""
    candidates = [sys.executable]
    top = maximum[1] if maximum else 15
    candidates += [p for v in range(top, minimum[1] - 1, -1) if (p := shutil.which(f"python3.{v}"))]
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in filter(None, roots):
        candidates += sorted(glob.glob(f"{root}/versions/3.*/bin/python3"), reverse=True)
    for python in dict.fromkeys(candidates):
        if _runs(python, minimum, maximum):
            return python
    return None


def make_host(name: str) -> str | None:
    """Make (or keep) one host; returns None when it is ready, else the reason it is not."""
    minimum, maximum = ((3, 11), (3, 11)) if name == "blender" else ((3, 12), None)
    env, stamp, unavailable = HOSTS / name, HOSTS / f"{name}.stamp", HOSTS / f"{name}.unavailable"
    wanted = " ".join(REQUIREMENTS[name])
    if stamp.is_file() and stamp.read_text() == wanted and (env / "bin" / "python").exists():
        return None
    unavailable.unlink(missing_ok=True)
    python = find_python(minimum, maximum)
    if python is None:
        return f"no Python {'.'.join(map(str, minimum))}{'' if maximum == minimum else '+'} found for {name}"
    shutil.rmtree(env, ignore_errors=True)
    HOSTS.mkdir(exist_ok=True)
    steps = [[python, "-m", "venv", str(env)],
             [str(env / "bin" / "python"), "-m", "pip", "install", "-q", *REQUIREMENTS[name]]]
    if name == "vapoursynth":
        steps.append([str(env / "bin" / "vapoursynth"), "config"])      # lets vspipe find this Python
    for step in steps:
        print(f"editor_hosts: {' '.join(step)}", flush=True)
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return f"{' '.join(step[:4])} failed: {' / '.join(tail)}"
    stamp.write_text(wanted)
    return None


def main(argv: list[str]) -> int:
    names = argv or list(REQUIREMENTS)
    for name in names:
        if name not in REQUIREMENTS:
            print(f"editor_hosts: unknown host {name!r} (choose from {', '.join(REQUIREMENTS)})", file=sys.stderr)
            return 2
        reason = make_host(name)
        if reason:
            (HOSTS / f"{name}.unavailable").write_text(reason + "\n")
            print(f"editor_hosts: {name}: not available: {reason}", file=sys.stderr)
        else:
            print(f"editor_hosts: {name}: ready ({HOSTS / name})")
    if "vapoursynth" in names:  # its CUDA torch builds the CUDA extension ahead of time (cached by key)
        subprocess.run([sys.executable, str(REPO / "scripts" / "build_kernels.py")], check=False)
    if not argv:
        print(f"editor_hosts: ffmpeg: {system_ffmpeg()}")
    return 0


def system_ffmpeg() -> str:
    """A system ffmpeg for the ``--encoder ffmpeg`` tests: Debian's, installed with apt when missing
    and this runs as root; otherwise the tests skip, saying why."""
    found = shutil.which("ffmpeg")
    if found:
        return f"ready ({found})"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "not available (no ffmpeg on PATH, and no apt-get as root to install it)"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    ok = (subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet).returncode == 0
          and subprocess.run(["apt-get", "install", "-y", "-qq", "ffmpeg"], check=False, **quiet).returncode == 0)
    found = shutil.which("ffmpeg")
    return f"installed ({found})" if ok and found else "not available (apt-get could not install ffmpeg)"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
