"""Thompson sampling over Ω (UniGuard appendix A.5: "we employ our model merging search which
uses Thompson sampling to find the best set of alpha weights"). Pure, seeded numpy.

Each suggestion:

1. fits the posterior of `guardray.search.posterior` to every observation so far: a Bayesian
   linear regression on random Fourier features of ``z = SearchSpace.features(point)``
   (approximately a GP with an RBF kernel), on the standardised objective; the lengthscale
   and noise variance come from a small grid, by the log evidence;
2. draws ONE function from it, ``f~(z) = theta^T phi(z)`` with ``theta ~ N(mu_N, Sigma_N)``;
3. returns the maximiser of ``f~`` over a candidate set: ``n_random`` uniform draws from Ω
   (eq. 8) plus ``n_local`` local moves around the three best observed points, leaving out
   points already observed or pending. Most candidates are local (as in trust-region Thompson
   sampling, TuRBO): with a budget of tens of trials in a ~15-dimensional space, maximising a
   draw over many uniform points mostly chases prior uncertainty far from the data; on the
   synthetic objectives of the tests this choice raised the best-of-16 clearly.

Why this surrogate: the objective (validation macro-F1 of a merged model) is a smooth but
non-linear function of the weights and parameters with interactions (a good lambda depends on
the method and on how many models take part), so a plain linear model in the features is too
rigid, while an exact GP posterior sampled jointly over thousands of candidate points costs
O(m^3). The feature-space model keeps the GP's behaviour (an RBF kernel, calibrated
uncertainty that shrinks near observations) and makes a Thompson draw a single D-dimensional
Gaussian sample whose maximisation costs O(m D). The posterior is closed form (no MCMC) and is
refitted from scratch at each suggestion, so the state stays the observations alone.

Failed evaluations (errors, NaN) enter the fit at the worst value observed so far: the region
is bad, and the next draw avoids it. Concurrent suggestions (several trials in flight) differ
because each one draws its own theta; pending points are never proposed again.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from guardray.search.policies import SearchPolicy
from guardray.search.posterior import (
    FourierFeatures,
    Posterior,
    blr_posterior,
    log_evidence,
    standardise,
)
from guardray.search.space import Point, SearchSpace

LENGTHSCALES = (0.2, 0.4, 0.8)
NOISE_VARS = (0.01, 0.1, 0.5)


class ThompsonPolicy(SearchPolicy):
    """Thompson sampling with a random-Fourier-feature Bayesian linear regression surrogate.

    Args:
        space: the search space Ω.
        seed: seed of the policy's random generator (and of the Fourier features).
        seed_point: start with the T = 1 seed point.
        n_initial: suggestions before the surrogate is used (the seed point counts); the rest
            of them are uniform draws from Ω.
        n_features: D, the number of Fourier features.
        n_random / n_local: candidate points per suggestion (uniform / local moves).
        lengthscales / noise_vars: the hyperparameter grid (standardised objective units,
            features in [0, 1]).
    """

    name = "thompson"

    def __init__(self, space: SearchSpace, seed: int = 0, seed_point: bool = True,
                 n_initial: int = 3, n_features: int = 128, n_random: int = 128,
                 n_local: int = 512, lengthscales: tuple[float, ...] = LENGTHSCALES,
                 noise_vars: tuple[float, ...] = NOISE_VARS):
        super().__init__(space, seed, seed_point)
        self.n_initial = int(n_initial)
        self.n_features = int(n_features)
        self.n_random = int(n_random)
        self.n_local = int(n_local)
        self.lengthscales = tuple(float(x) for x in lengthscales)
        self.noise_vars = tuple(float(x) for x in noise_vars)
        self.last_fit: dict[str, Any] = {}

    # ----------------------------------------------------------------------- surrogate

    def features_for(self, lengthscale_index: int) -> FourierFeatures:
        """The Fourier features of one grid lengthscale: a function of the seed alone, so a
        restored policy draws the same features without storing them."""
        rng = np.random.default_rng([self.seed, 1, lengthscale_index])
        return FourierFeatures.draw(self.space.n_features, self.n_features,
                                    self.lengthscales[lengthscale_index], rng)

    def training_data(self) -> tuple[np.ndarray, np.ndarray]:
        """``(Z (n, d), y (n,))``: featurised observations and raw objective values, failed
        ones at the worst successful value (none before the first success)."""
        ok = [v for _, v in self.observations if v is not None]
        if not ok:
            return np.zeros((0, self.space.n_features)), np.zeros(0)
        worst = min(ok)
        Z = np.stack([self.space.features(p) for p, _ in self.observations])
        y = np.array([worst if v is None else v for _, v in self.observations])
        return Z, y

    def posterior(self) -> tuple[Posterior, FourierFeatures, dict[str, float]]:
        """Fit the posterior, choosing (lengthscale, noise variance) by the log evidence.

        Returns:
            ``(posterior over theta, its features, {"lengthscale", "noise_var",
            "log_evidence", "y_mean", "y_std"})``.
        """
        Z, y = self.training_data()
        ys, mean, std = standardise(y)
        best = None
        for i, _ in enumerate(self.lengthscales):
            feats = self.features_for(i)
            Phi = feats(Z)
            for noise in self.noise_vars:
                ev = log_evidence(Phi, ys, 1.0, noise)
                if best is None or ev > best[0]:
                    best = (ev, i, noise, feats, Phi)
        ev, i, noise, feats, Phi = best
        info = {"lengthscale": self.lengthscales[i], "noise_var": noise, "log_evidence": ev,
                "y_mean": mean, "y_std": std}
        return blr_posterior(Phi, ys, 1.0, noise), feats, info

    # ----------------------------------------------------------------------- proposals

    def candidates(self) -> list[Point]:
        """Uniform draws from Ω plus local moves around the three best observed points."""
        points = [self.space.sample(self.rng) for _ in range(self.n_random)]
        ranked = sorted(((v, i) for i, (_, v) in enumerate(self.observations) if v is not None),
                        reverse=True)[:3]
        anchors = [self.observations[i][0] for _, i in ranked]
        if anchors:
            scales = (0.03, 0.1, 0.3)
            for j in range(self.n_local):
                anchor = anchors[j % len(anchors)]
                points.append(self.space.perturb(anchor, self.rng, scales[j % len(scales)]))
        return points

    def _propose(self) -> Point:
        n_ok = sum(v is not None for _, v in self.observations)
        if self.issued < self.n_initial or n_ok < 2:
            return self.space.sample(self.rng)
        with _one_blas_thread():
            return self._thompson_step()

    def _thompson_step(self) -> Point:
        post, feats, info = self.posterior()
        theta = post.sample(self.rng)
        points = self.candidates()
        seen = self._seen()
        fresh = [p for p in points if p.key() not in seen] or points
        values = feats(np.stack([self.space.features(p) for p in fresh])) @ theta
        choice = int(np.argmax(values))
        self.last_fit = {**info, "sampled_max": float(values[choice] * info["y_std"]
                                                      + info["y_mean"])}
        return fresh[choice]

    def _options(self) -> dict[str, Any]:
        return {"n_initial": self.n_initial, "n_features": self.n_features,
                "n_random": self.n_random, "n_local": self.n_local,
                "lengthscales": list(self.lengthscales), "noise_vars": list(self.noise_vars)}


def _one_blas_thread():
    """One BLAS thread for the small (<= 128 x 128) algebra of a suggestion: more threads only
    add synchronisation, and on a busy 2-core machine spinning threads made it 4x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")
