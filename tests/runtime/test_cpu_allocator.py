"""keep_freed_memory: big blocks are reused from the heap instead of being faulted in afresh."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.runtime.cpu_allocator import keep_freed_memory

PROBE = """
import json, resource, sys
import torch
import torch.nn.functional as F
from pipeline.runtime.cpu_allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else False
torch.set_num_threads(1)
w = torch.randn(16, 16, 3, 3) / 12
faults = []
with torch.no_grad():
    for _ in range(4):                       # one "frame": a few layers of 64 MiB activations
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(4, 16, 512, 512)
        for _ in range(3):
            x = F.leaky_relu(F.conv2d(x, w, padding=1), 0.2) * 1.4
        del x
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""

linux_glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")


def _probe(mode: str, env: dict | None = None) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         cwd=root, env={**os.environ, **(env or {})})
    return json.loads(out.stdout)


@linux_glibc
def test_freed_blocks_are_reused_without_page_faults():
    off = _probe("off")
    on = _probe("on")
    pages = 64 * 2**20 // 4096                    # of one activation
    assert min(off["faults"][2:]) > 4 * pages     # plain glibc: every block is faulted in again, each frame
    assert on["applied"]
    assert on["faults"][0] > 2 * pages            # the first frame touches its memory once
    # later frames reuse it (now and then one block does not fit a freed hole and is new)
    assert sum(on["faults"][1:]) < sum(off["faults"][1:]) // 10


@linux_glibc
def test_an_allocator_configured_by_the_user_is_left_alone(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_max=1")
    assert keep_freed_memory() is False
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("LD_PRELOAD", "libjemalloc.so.2")
    assert keep_freed_memory() is False
