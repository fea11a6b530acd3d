"""Build the CUDA extension ahead of time against a CUDA build of torch, as users do
(``FACESTYLE_BUILD_KERNELS=1 python setup.py build_ext``), and import it. No GPU is needed.

Usage: ``python scripts/build_kernels.py [--python PY] [--archs "8.0;9.0"] [--force]``.

* The Python is one with a CUDA build of torch: by default the VapourSynth host that
  ``scripts/editor_hosts.py`` makes (``.hosts/vapoursynth``, PyPI's CUDA torch, Python 3.12+), which
  has facestyle installed in editable mode.
* ``CUDA_HOME`` and ``CUDA_PATH`` are removed from the build's environment, so ``setup.py`` has to
  find the toolkit itself (``kernels/cuda_home.py``).
* The result goes to ``.hosts/kernels/<key>/`` (``lib/kernels/_C*.so``, ``build.log``, ``ready``),
  where ``key`` is a hash of the kernel sources, the build helpers, the torch and Python versions and
  the architectures; a key already built is kept (about 15 s to check instead of minutes to build).
  The folder is built under a temporary name and renamed when the import check passed.
* Exit 0 and ``.hosts/kernels.unavailable`` (the reason) when there is no CUDA torch or no CUDA
  toolkit to build with; exit 1 and ``.hosts/kernels.failed`` (the log's tail) when the build or the
  import fails. ``tests/kernels/test_aot_build.py`` skips or fails on these.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kernels.cuda_home import find_cuda_home  # noqa: E402

HOSTS = REPO / ".hosts"
OUT = HOSTS / "kernels"
UNAVAILABLE, FAILED = HOSTS / "kernels.unavailable", HOSTS / "kernels.failed"
DEFAULT_PYTHON = HOSTS / "vapoursynth" / "bin" / "python"
DEFAULT_ARCHS = "8.0;9.0"
INPUTS = ["kernels/aot.py", "kernels/cuda_home.py", "kernels/_build.py"]  # plus kernels/csrc/*
EXPORTS = ("bias_act", "upfirdn2d", "probe")

# Run in the build's Python: import the built kernels._C the way kernels/_build.py does.
IMPORT_CHECK = """
import importlib, json, sys
import kernels
kernels.__path__.insert(0, sys.argv[1])
import torch
C = importlib.import_module("kernels._C")
print(json.dumps({"file": C.__file__, "names": sorted(n for n in dir(C) if not n.startswith("_")),
                  "torch": torch.__version__, "cuda": torch.version.cuda}))
"""


def torch_info(python: str) -> dict | None:
    """``{"torch": ..., "cuda": ..., "python": "3.13"}`` of ``python``, or None when it has no torch."""
    code = "import json, sys, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, " \
           "'python': '%d.%d' % sys.version_info[:2]}))"
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None


def build_key(info: dict, archs: str, toolkit: str) -> str:
    """The cache folder name: a hash of the sources, the build helpers and the build's versions."""
    h = hashlib.sha256()
    files = sorted((REPO / "kernels" / "csrc").iterdir()) + [REPO / p for p in INPUTS]
    for path in files:
        if path.is_file():
            h.update(f"{path.relative_to(REPO)}\0".encode() + path.read_bytes())
    h.update(json.dumps([info, archs, toolkit], sort_keys=True).encode())
    return h.hexdigest()[:20]


def build_env(archs: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH")}
    env.update(FACESTYLE_BUILD_KERNELS="1", TORCH_CUDA_ARCH_LIST=archs, MAX_JOBS=env.get("MAX_JOBS", "2"))
    return env


def build(python: str, archs: str, force: bool = False) -> tuple[str, Path | None]:
    """Build (or keep) the extension; returns ``(state, folder)`` with state ``ready``,
    ``unavailable: ...`` or ``failed: ...``."""
    info = torch_info(python)
    if info is None:
        return f"unavailable: {python} cannot import torch (run scripts/editor_hosts.py vapoursynth)", None
    if not info["cuda"]:
        return f"unavailable: torch {info['torch']} in {python} is not a CUDA build", None
    saved = {k: os.environ.pop(k) for k in ("CUDA_HOME", "CUDA_PATH") if k in os.environ}
    try:
        toolkit, how = find_cuda_home(info["cuda"])
    finally:
        os.environ.update(saved)
    if toolkit is None:
        return f"unavailable: no CUDA toolkit ({how})", None
    final = OUT / build_key(info, archs, toolkit)
    if (final / "ready").is_file() and not force:
        return "ready", final
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():  # other keys and killed builds: one build is kept
        shutil.rmtree(old, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=OUT))
    log = tmp / "build.log"
    cmd = [python, "setup.py", "build_ext", "--build-lib", str(tmp / "lib"), "--build-temp", str(tmp / "obj")]
    print(f"build_kernels: {' '.join(cmd[1:3])} for {archs} with torch {info['torch']} (CUDA_HOME unset)",
          flush=True)
    start = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=REPO, env=build_env(archs), stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        return f"failed: setup.py build_ext exited {proc.returncode}: {_tail(log)}", None
    check = subprocess.run([python, "-c", IMPORT_CHECK, str(tmp / "lib" / "kernels")], capture_output=True,
                           text=True, cwd=tmp, env=build_env(archs))
    if check.returncode != 0:
        return f"failed: the built kernels._C does not import: {check.stderr.strip().splitlines()[-1:]}", None
    result = json.loads(check.stdout.strip().splitlines()[-1])
    missing = [n for n in EXPORTS if n not in result["names"]]
    if missing:
        return f"failed: kernels._C lacks {missing}", None
    shutil.rmtree(tmp / "obj", ignore_errors=True)
    result.update(file=str(final / Path(result["file"]).relative_to(tmp)), build_seconds=round(seconds, 1),
                  archs=archs, toolkit=toolkit, python=python)
    (tmp / "ready").write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, final)
    return "ready", final


def _tail(log: Path, lines: int = 5) -> str:
    return " / ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=str(DEFAULT_PYTHON), help="a Python with a CUDA build of torch")
    parser.add_argument("--archs", default=DEFAULT_ARCHS, help="TORCH_CUDA_ARCH_LIST for the build")
    parser.add_argument("--force", action="store_true", help="rebuild even when this key is built")
    args = parser.parse_args(argv)
    start = time.monotonic()
    state, folder = build(args.python, args.archs, args.force)
    UNAVAILABLE.unlink(missing_ok=True)
    FAILED.unlink(missing_ok=True)
    if state == "ready":
        print(f"build_kernels: ready ({folder}, {time.monotonic() - start:.0f} s)")
        return 0
    kind, reason = state.split(": ", 1)
    HOSTS.mkdir(exist_ok=True)
    (UNAVAILABLE if kind == "unavailable" else FAILED).write_text(reason + "\n")
    print(f"build_kernels: {state}", file=sys.stderr)
    return 0 if kind == "unavailable" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
