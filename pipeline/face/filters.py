"""Temporal filters shared by face tracking (landmarks) and latent smoothing (W+ codes)."""
from __future__ import annotations

import math

import numpy as np


class OneEuroFilter:
    """One-Euro filter (Casiez et al. 2012) over an array, with one shared cutoff.

    The cutoff is ``min_cutoff + beta * speed`` where ``speed`` is the mean norm of the smoothed
    per-point velocity (rows of the array reshaped to ``[-1, point_dim]``: 2 for landmarks, the
    code length for W+ rows), so all points are filtered alike and their shape is not distorted.
    Units: those of the values per second.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0,
                 point_dim: int = 2) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.point_dim = point_dim
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    @staticmethod
    def _alpha(dt: float, cutoff: float) -> float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter the value ``x`` observed at time ``t`` (seconds, increasing); returns a copy."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._dx is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt <= 0:
            return self._x.copy()
        a_d = self._alpha(dt, self.d_cutoff)
        self._dx = a_d * (x - self._x) / dt + (1.0 - a_d) * self._dx
        speed = float(np.linalg.norm(self._dx.reshape(-1, self.point_dim), axis=1).mean())
        a = self._alpha(dt, self.min_cutoff + self.beta * speed)
        self._x = a * x + (1.0 - a) * self._x
        self._t = t
        return self._x.copy()
