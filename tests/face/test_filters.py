"""The One-Euro filter: a still value stays, a step is low-passed by the hand-computed factor, speed
raises the cutoff, time that does not advance changes nothing, points of any length are filtered alike."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.face.filters import OneEuroFilter


def alpha(dt: float, cutoff: float) -> float:
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff) / dt)


def test_one_euro_filter():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    x = np.ones((3, 2))
    for i in range(5):
        np.testing.assert_allclose(f(x, i / 25), x)
    y = f(x + 10.0, 5 / 25)
    assert np.all((y > 1.0) & (y < 11.0))  # low-passed step
    fast = OneEuroFilter(min_cutoff=1.0, beta=10.0)
    fast(x, 0.0)
    assert np.all(fast(x + 10.0, 0.04) > y)  # a higher beta follows faster


def test_a_step_moves_by_the_smoothing_factor():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    f(np.zeros((3, 2)), 0.0)
    y = f(np.full((3, 2), 10.0), 0.04)
    np.testing.assert_allclose(y, 10.0 * alpha(0.04, 1.0))             # 10 * 0.2009 = 2.009
    assert alpha(0.04, 1.0) == pytest.approx(0.2009, abs=1e-4)


def test_speed_raises_the_cutoff():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5, d_cutoff=1.0)
    f(np.zeros((1, 2)), 0.0)
    y = f(np.array([[3.0, 4.0]]), 0.1)                                  # a 5-unit move in 0.1 s
    speed = alpha(0.1, 1.0) * 5.0 / 0.1                                 # the smoothed speed's norm
    np.testing.assert_allclose(y, np.array([[3.0, 4.0]]) * alpha(0.1, 1.0 + 0.5 * speed))


def test_time_that_does_not_advance_changes_nothing():
    f = OneEuroFilter()
    first = f(np.ones(4), 1.0)
    assert np.array_equal(f(np.full(4, 9.0), 1.0), first)
    assert np.array_equal(f(np.full(4, 9.0), 0.5), first)


def test_code_rows_are_points():
    f = OneEuroFilter(min_cutoff=1.0, beta=1.0, point_dim=4)            # e.g. W+ rows of length 4
    f(np.zeros((2, 4)), 0.0)
    y = f(np.ones((2, 4)), 0.1)
    speed = alpha(0.1, 1.0) * 2.0 / 0.1                                 # |(1, 1, 1, 1)| = 2 per row
    np.testing.assert_allclose(y, alpha(0.1, 1.0 + speed))
