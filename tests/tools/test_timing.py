"""The timing helpers of the benchmark: stage proxies on a fake clock (exact), FLOP counting, the peak probe."""
from __future__ import annotations

import contextlib

import torch

from pipeline.tools.timing import TimedIter, count_flops, device_sync, measure_peak, own_times


def test_own_times_subtract_the_stage_below():
    now = [0.0]

    def source():
        for i in range(3):
            now[0] += 1.0                    # 1 s of work per item
            yield i

    def stage(items):
        for x in items:
            now[0] += 2.0                    # 2 s of own work per item
            yield x

    below = TimedIter(source(), "below", clock=lambda: now[0])
    above = TimedIter(stage(below), "above", clock=lambda: now[0])
    assert list(above) == [0, 1, 2]
    assert (below.seconds, above.seconds) == (3.0, 9.0)
    assert own_times([below, above]) == [3.0, 6.0]
    assert (below.items, above.items) == (3, 3)
    assert above.ended_at == 9.0


def test_peak_probe_counts_flops_in_the_precision_context():
    for precision in (contextlib.nullcontext(), torch.autocast("cpu", dtype=torch.bfloat16)):
        matmul, conv = measure_peak(torch.device("cpu"), torch.float32, precision, matmul_n=64,
                                    conv_shape=(2, 16, 8, 8), reps=2)
        assert matmul.flops == 2 * 64 ** 3
        assert conv.flops == 2 * 2 * 16 * 16 * 9 * 8 * 8
        assert matmul.gflops > 0 and conv.gflops > 0


def test_count_flops_returns_the_result():
    a = torch.ones(4, 8)
    y, flops = count_flops(lambda: a @ a.T)
    assert y.shape == (4, 4) and flops == 2 * 4 * 8 * 4


def test_no_sync_on_the_cpu():
    assert device_sync(torch.device("cpu")) is None
