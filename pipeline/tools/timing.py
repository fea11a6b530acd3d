"""Clocks for the benchmark: how long each streaming stage takes, and what the device can do at best.

Stage time. The stages are nested generators driven from the main thread by the last consumer
(``video_out.write``): when it asks paste for a frame, paste asks generate, and so on down to the
reader. A :class:`TimedIter` between two stages records the time spent inside its ``__next__``,
which is *inclusive*: the stage above it and everything that stage pulled from below. A stage's own
(*exclusive*) time is its proxy's inclusive time minus the inclusive time of the proxy it pulls
from (:func:`own_times`); the own times of a chain add up exactly to the inclusive time of its
last proxy.

Peak. :func:`measure_peak` times a large matmul and a 512-channel 3x3 convolution on the model's
device and dtype, inside the same precision context the pipeline runs in, and keeps the best of a
few repetitions: an achievable ceiling measured here, not a datasheet number.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

T = TypeVar("T")
Clock = Callable[[], float]


class TimedIter(Iterator[T], Generic[T]):
    """Pass items through, adding the time spent in each ``next()`` of ``source`` to ``seconds``.

    Attributes:
        name: the stage whose output this is.
        seconds: inclusive time in ``next()`` (the final ``StopIteration`` included).
        items: items handed on.
        ended_at: clock reading when the source was found exhausted (None before that).
    """

    def __init__(self, source: Iterable[T], name: str, *, clock: Clock = time.perf_counter,
                 sync: Callable[[], None] | None = None) -> None:
        """``sync`` runs at the end of every ``next()`` inside the timed span (``torch.cuda.synchronize``
        on a GPU, so queued kernels are charged to the stage that launched them)."""
        self.name = name
        self.seconds = 0.0
        self.items = 0
        self.ended_at: float | None = None
        self._it = iter(source)
        self._clock = clock
        self._sync = sync

    def __iter__(self) -> TimedIter[T]:
        return self

    def __next__(self) -> T:
        t0 = self._clock()
        try:
            item = next(self._it)
            if self._sync is not None:
                self._sync()
        except StopIteration:
            self.ended_at = self._clock()
            self.seconds += self.ended_at - t0
            raise
        except BaseException:
            self.seconds += self._clock() - t0
            raise
        self.seconds += self._clock() - t0
        self.items += 1
        return item


def own_times(chain: Sequence[TimedIter]) -> list[float]:
    """Exclusive seconds of each stage of ``chain`` (upstream first, each pulling only from the one before)."""
    out = []
    below = 0.0
    for proxy in chain:
        out.append(max(proxy.seconds - below, 0.0))
        below = proxy.seconds
    return out


def device_sync(device: torch.device) -> Callable[[], None] | None:
    """A function that waits for ``device``'s queued work, or None where work is synchronous (CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def count_flops(fn: Callable[[], T]) -> tuple[T, int]:
    """Run ``fn()`` under :class:`~torch.utils.flop_counter.FlopCounterMode`; return its result and the
    FLOPs counted (matmuls and convolutions, 2 per multiply-add; element-wise ops are not counted)."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())


@dataclass(frozen=True)
class PeakResult:
    """One probe: what ran, its FLOPs per call and the best rate measured (GFLOP/s)."""

    name: str
    flops: int
    seconds: float  # best time of one call
    gflops: float


def best_rate(name: str, fn: Callable[[], object], sync: Callable[[], None] | None, *, reps: int = 3,
              min_rep_s: float = 0.02) -> PeakResult:
    """Best GFLOP/s of ``fn`` over ``reps`` timed repetitions.

    Steps: 1. one call under the FLOP counter (also the warm-up); 2. one timed call sets how many
    calls make one repetition (at least ``min_rep_s`` long, so launch overhead on a GPU does not
    count); 3. ``reps`` repetitions, each ended by ``sync``; the fastest is kept.
    """
    _, flops = count_flops(fn)
    wait = sync or (lambda: None)
    wait()
    t0 = time.perf_counter()
    fn()
    wait()
    once = max(time.perf_counter() - t0, 1e-9)
    inner = max(1, math.ceil(min_rep_s / once))
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        wait()
        best = min(best, (time.perf_counter() - t0) / inner)
    return PeakResult(name, flops, best, flops / best / 1e9)


def measure_peak(device: torch.device, dtype: torch.dtype, precision: contextlib.AbstractContextManager, *,
                 matmul_n: int = 2048, conv_shape: tuple[int, int, int, int] = (4, 512, 32, 32),
                 reps: int = 3) -> tuple[PeakResult, PeakResult]:
    """The device's measured matmul and conv peak in the pipeline's precision setting.

    Args:
        device, dtype: where and in what weight dtype the model lives.
        precision: the pipeline's autocast context (``cfg.precision.context(device)``), entered here.
        matmul_n: ``[n, n] @ [n, n]``.
        conv_shape: ``[B, C, H, W]`` input of a ``C -> C`` 3x3 convolution, padding 1.

    Returns:
        ``(matmul, conv)`` :class:`PeakResult` s.
    """
    sync = device_sync(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    b, c, h, w = conv_shape
    a = torch.randn(matmul_n, matmul_n, generator=gen).to(device, dtype)
    m = torch.randn(matmul_n, matmul_n, generator=gen).to(device, dtype)
    x = torch.randn(b, c, h, w, generator=gen).to(device, dtype)
    k = (torch.randn(c, c, 3, 3, generator=gen) / math.sqrt(9 * c)).to(device, dtype)
    with torch.inference_mode(), precision:
        matmul = best_rate(f"matmul {matmul_n}x{matmul_n}", lambda: a @ m, sync, reps=reps)
        conv = best_rate(f"conv3x3 {c}->{c} on {b}x{c}x{h}x{w}", lambda: F.conv2d(x, k, padding=1), sync,
                         reps=reps)
    return matmul, conv
