"""scripts/gpu_check.py --quick: the GPU check's CPU smoke run works end to end (every step, the
table, the JSON), so it is not broken when the first GPU arrives."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_quick_mode_runs_every_step(tmp_path):
    out = tmp_path / "gc"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    rows = report["rows"]
    assert report["failed"] == 0 and report["quick"] and report["machine"]["device"] == "cpu"
    assert {r["step"] for r in rows} == {"build", "kernel", "generator", "imageops", "encoder", "bench"}
    imageops = [r for r in rows if r["step"] == "imageops"]
    assert len(imageops) == 3 and all(r["max_err"] <= 1 for r in imageops)  # kornia vs OpenCV / Pillow, levels
    kernels = [r for r in rows if r["step"] == "kernel"]
    # every golden shape in fp32 and bf16, the reference against float64 on the device
    assert {r["name"] for r in kernels} >= {"upfirdn2d_up2_pad2_1", "upfirdn2d_asym_crop", "fused_leaky_relu_2d"}
    assert all(r["max_err"] < (1e-5 if r["precision"] == "fp32" else 0.1) for r in kernels)
    generator = {(r["name"], r["precision"]): r for r in rows if r["step"] == "generator"}
    assert generator[("64x64 x2 reference ops", "fp32")]["max_err"] == 0.0
    assert generator[("64x64 x2 fused kernels", "fp32")]["max_err"] < 1e-5  # on a CPU both are the reference
    assert generator[("64x64 x2 fused, channels-last", "bf16")]["ms"] > 0
    assert generator[("64x64 x2 fused, CUDA graph", "bf16")]["note"] == "skipped: needs CUDA"
    [bench] = [r for r in rows if r["step"] == "bench"]
    assert bench["ms"] > 0 and json.loads((out / "bench.json").read_text())["frames"]["written"] == 4
    table = (out / "gpu_check.txt").read_text()
    assert table.splitlines()[0].split()[:3] == ["step", "what", "prec"] and len(table.splitlines()) == len(rows) + 2
    assert table.strip() in proc.stdout


def test_full_mode_needs_a_gpu_or_says_so(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--device", "cpu", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--quick" in proc.stderr
