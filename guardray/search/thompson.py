"""Thompson sampling over Ω (UniGuard appendix A.5: "we employ our model merging search which
uses Thompson sampling to find the best set of alpha weights"). Pure, seeded numpy.

Each suggestion:

1. fits the posterior of `guardray.search.posterior` to every observation so far: Bayesian
   linear regression on random Fourier features of ``z = SearchSpace.features(point)``,
   approximately a GP with an ARD RBF kernel, on the standardised objective
   ``y = (v - mean(v)) / std(v)``. The hyperparameters are fitted to the data seen so far by
   type-II maximum likelihood over a small grid:

       (l_w, l_o, s^2, sigma^2) = argmax log N(y | 0, s^2 Phi_l Phi_l^T + sigma^2 I)

   with one lengthscale ``l_w`` for the k weight features and one ``l_o`` for the rest
   (method one-hot, scaled parameters, instruction one-hot): whether the weights or the
   method matter more differs between pools, and two groups keep the grid small
   (4 x 3 x 3 x 3 = 108 closed-form evidences, each an n x n Cholesky);
2. draws ONE function from it, ``f~(z) = theta^T phi(z)`` with ``theta ~ N(mu_N, Sigma_N)``;
3. returns the maximiser of ``f~`` over a candidate set, leaving out points already observed
   or pending:

   - local, in a trust region around the incumbent x* (the best observation; TuRBO, Eriksson
     et al. 2019): ``n_local`` moves `SearchSpace.perturb(x*, scale)` with ``scale`` in
     ``{tau/4, tau/2, tau}`` (Dirichlet weights concentrated at x*'s, ``w ~ Dir(w*/scale)``;
     parameters ``+ N(0, (scale * range)^2)``, clipped; a member or the method changes with
     probability ``scale``), plus every discrete neighbour of x* (`SearchSpace.neighbours`:
     one member added, dropped or swapped; each other method), exactly and perturbed;
   - global (``n_random``, default 0): uniform draws from Ω (eq. 8).

   The trust-region size ``tau`` follows TuRBO's rule, replayed from the observations in
   order (so it needs no state of its own): it starts at ``tr_init``, doubles (up to
   ``tr_max``) after ``success_tol`` consecutive improvements of the best value by more than
   ``tr_tol``, halves after ``failure_tol`` consecutive non-improvements, and restarts at
   ``tr_init`` when it falls below ``tr_min``.

Why the candidate set matters: with a budget of tens of trials in a ~15-dimensional Ω, a
posterior draw far from the data is close to a prior draw, ``N(0, s^2)`` in standardised
units, and its maximum over many uniform points (about 2.5 s for 100 points, s the prior
standard deviation) usually beats the draw near the incumbent, so Thompson sampling over
uniform candidates alone behaves like random search. Maximising the same draw over a trust
region keeps it a Thompson sampler (the choice is still the argmax of one posterior sample)
while spending the few trials where the posterior has information. On the main job's pool
(docs/BENCHMARKS.md, "Merge search") this raised the mean best-of-16 from 0.767 to 0.783;
the discrete neighbours matter there because the good recipes drop members of the T = 1
soup. The default takes TuRBO's choice further and offers no global candidates at all
(``n_random=0``; exploration comes from the draw, the region's size and its restarts): with
64 uniform candidates beside the region, 46 of the 110 post-screening trials (10 seeds) went to
far-away points that the few observations say nothing about, and on the "main13" pool the
mean best-of-16 over 10 seeds rose from 0.829 to 0.837 without them (docs/BENCHMARKS.md,
"Trust region only").

Why this surrogate: the objective (validation macro-F1 of a merged model) is a smooth but
non-linear function of the weights and parameters with interactions (a good lambda depends on
the method and on how many models take part), so a plain linear model in the features is too
rigid, while an exact GP posterior sampled jointly over thousands of candidate points costs
O(m^3). The feature-space model keeps the GP's behaviour (an RBF kernel, calibrated
uncertainty that shrinks near observations) and makes a Thompson draw a single D-dimensional
Gaussian sample whose maximisation costs O(m D). The posterior is closed form (no MCMC) and is
refitted from scratch at each suggestion, so the state stays the observations alone.

Screening: after the seed point, a one-factor-at-a-time design around it is evaluated
before the first draw (the drop-one soups, then the scale ends), so that the surrogate starts
from the directions that matter instead of a cloud of nearly equal soups. (In the other
order, 10 seeds on the "main13" pool reached 0.898 instead of 0.901 at 16 trials: the four
drop-one soups after the scale ends count as four failures of the trust region and halve it
before the first draw.)

- ``screen_scale`` (on in configs/search.yaml): the seed point at both ends of the lambda
  range (`SearchSpace.scale_ends`; the F1-weighted soup is task arithmetic at lambda = 1, so
  these are task arithmetic at lambda_max and lambda_min with the soup's weights). The scale
  of the merged task vector is the one hyperparameter task arithmetic tunes (Ilharco et al.
  2023) and one of TIES's two, and the soup cannot express it. On the "main13" pool the seed
  soup scores 0.852 and task arithmetic at lambda 1.5 with the same weights 0.897, above
  random search's best of 64 draws (0.882): the weights, which the draws had spent their
  trials on, mattered less than the scale (docs/BENCHMARKS.md, "Scale screening").
- ``screen`` (on in configs/search.yaml): the seed point's drop-one soups (k trials). With
  only the soup observed, the draws kept proposing points in the trust region around it, and
  on the main job's pool of that time 2 of 5 seeds never improved on it in 16 trials; after
  the drop-one soups the surrogate knows how much each member matters, and every seed ended
  at 0.80-0.82 (mean best of 16: 0.808 vs 0.783 without; docs/BENCHMARKS.md, "Merge search").

Failed evaluations (errors, NaN) enter the fit at the worst value observed so far: the region
is bad, and the next draw avoids it. Concurrent suggestions (several trials in flight) differ
because each one draws its own theta; pending points are never proposed again.
"""

from __future__ import annotations

import contextlib
import itertools
import math
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

WEIGHT_LENGTHSCALES = (0.1, 0.2, 0.4, 0.8)
OTHER_LENGTHSCALES = (0.3, 0.6, 1.2)
PRIOR_VARS = (0.5, 1.0, 2.0)
NOISE_VARS = (0.01, 0.1, 0.5)

# Options that `state()` records and `policy_registry.policy_from_state` passes back.
OPTIONS = ("n_initial", "screen", "screen_scale", "n_features", "n_random", "n_local",
           "weight_lengthscales", "other_lengthscales", "prior_vars", "noise_vars", "tr_init",
           "tr_min", "tr_max", "tr_tol", "success_tol", "failure_tol")


class ThompsonPolicy(SearchPolicy):
    """Thompson sampling with a random-Fourier-feature Bayesian linear regression surrogate.

    Args:
        space: the search space Ω.
        seed: seed of the policy's random generator (and of the Fourier features).
        seed_point: start with the T = 1 seed point.
        n_initial: suggestions before the surrogate is used (the seed point counts); the rest
            of them are uniform draws from Ω.
        screen: after the seed point, evaluate its drop-one soups (`SearchSpace.drop_one`:
            the same method without one member, the weakest member's first), a
            one-factor-at-a-time screening design that shows the surrogate which members
            help; they count towards ``n_initial``, which they may extend.
        screen_scale: then evaluate the seed point at the two ends of the lambda range
            (`SearchSpace.scale_ends`: for the linear soup, task arithmetic at lambda_max
            and lambda_min), the same design on the merge's scale.
        n_features: D, the number of Fourier features.
        n_random / n_local: candidate points per suggestion (uniform over Ω / in the trust
            region); with ``n_random=0`` (the default) only the trust region is searched.
        weight_lengthscales / other_lengthscales / prior_vars / noise_vars: the
            hyperparameter grid (standardised objective units, features in [0, 1]).
        tr_init / tr_min / tr_max: trust-region size (a `SearchSpace.perturb` scale).
        tr_tol: an improvement of the best value by more than this counts as a success.
        success_tol / failure_tol: consecutive successes / failures that double / halve it.
    """

    name = "thompson"

    def __init__(self, space: SearchSpace, seed: int = 0, seed_point: bool = True,
                 n_initial: int = 2, screen: bool = False, screen_scale: bool = False,
                 n_features: int = 128,
                 n_random: int = 0,
                 n_local: int = 512,
                 weight_lengthscales: tuple[float, ...] = WEIGHT_LENGTHSCALES,
                 other_lengthscales: tuple[float, ...] = OTHER_LENGTHSCALES,
                 prior_vars: tuple[float, ...] = PRIOR_VARS,
                 noise_vars: tuple[float, ...] = NOISE_VARS,
                 tr_init: float = 0.2, tr_min: float = 0.02, tr_max: float = 0.5,
                 tr_tol: float = 1e-3, success_tol: int = 2, failure_tol: int = 3):
        super().__init__(space, seed, seed_point)
        self.n_initial = int(n_initial)
        self.screen = bool(screen)
        self.screen_scale = bool(screen_scale)
        self.n_features = int(n_features)
        self.n_random = int(n_random)
        self.n_local = int(n_local)
        self.weight_lengthscales = tuple(float(x) for x in weight_lengthscales)
        self.other_lengthscales = tuple(float(x) for x in other_lengthscales)
        self.prior_vars = tuple(float(x) for x in prior_vars)
        self.noise_vars = tuple(float(x) for x in noise_vars)
        grids = {"weight_lengthscales": self.weight_lengthscales,
                 "other_lengthscales": self.other_lengthscales,
                 "prior_vars": self.prior_vars, "noise_vars": self.noise_vars}
        for gname, grid in grids.items():
            if not grid or min(grid) <= 0:
                raise ValueError(f"{gname} must be a non-empty grid of positive values, got "
                                 f"{list(grid)}")
        if not 0 < tr_min <= tr_init <= tr_max:
            raise ValueError(f"need 0 < tr_min <= tr_init <= tr_max, got {tr_min}, {tr_init}, "
                             f"{tr_max}")
        self.tr_init, self.tr_min, self.tr_max = float(tr_init), float(tr_min), float(tr_max)
        self.tr_tol = float(tr_tol)
        self.success_tol, self.failure_tol = int(success_tol), int(failure_tol)
        self.last_fit: dict[str, Any] = {}

    # ----------------------------------------------------------------------- surrogate

    def base_features(self) -> tuple[np.ndarray, np.ndarray]:
        """``(E (D, d) ~ N(0, 1), b (D,) ~ U[0, 2 pi))``: a function of the seed alone, so a
        restored policy draws the same features without storing them."""
        rng = np.random.default_rng([self.seed, 1])
        E = rng.standard_normal((self.n_features, self.space.n_features))
        b = rng.uniform(0.0, 2 * math.pi, size=self.n_features)
        return E, b

    def lengthscale_vector(self, weight: float, other: float) -> np.ndarray:
        """(d,) ARD lengthscales: ``weight`` for the k weight features, ``other`` after."""
        ls = np.full(self.space.n_features, float(other))
        ls[: self.space.k] = weight
        return ls

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
        """Fit the posterior, choosing ``(l_w, l_o, s^2, sigma^2)`` by the log evidence.

        Returns:
            ``(posterior over theta, its features, {"weight_lengthscale",
            "other_lengthscale", "prior_var", "noise_var", "log_evidence", "y_mean",
            "y_std"})``.
        """
        Z, y = self.training_data()
        ys, mean, std = standardise(y)
        E, b = self.base_features()
        best = None
        for lw, lo in itertools.product(self.weight_lengthscales, self.other_lengthscales):
            feats = FourierFeatures.scaled(E, b, self.lengthscale_vector(lw, lo))
            Phi = feats(Z)
            for s2, noise in itertools.product(self.prior_vars, self.noise_vars):
                ev = log_evidence(Phi, ys, s2, noise)
                if best is None or ev > best[0]:
                    best = (ev, lw, lo, s2, noise, feats, Phi)
        ev, lw, lo, s2, noise, feats, Phi = best
        info = {"weight_lengthscale": lw, "other_lengthscale": lo, "prior_var": s2,
                "noise_var": noise, "log_evidence": ev, "y_mean": mean, "y_std": std}
        return blr_posterior(Phi, ys, s2, noise), feats, info

    # ----------------------------------------------------------------------- proposals

    def trust_region(self) -> float:
        """The trust-region size ``tau`` after the observations so far (TuRBO's rule)."""
        tau, wins, losses, best = self.tr_init, 0, 0, None
        for _, v in self.observations:
            if best is None:
                best = v
                continue
            if v is not None and v > best + self.tr_tol:
                best, wins, losses = v, wins + 1, 0
            else:
                wins, losses = 0, losses + 1
            if wins >= self.success_tol:
                tau, wins = min(2 * tau, self.tr_max), 0
            if losses >= self.failure_tol:
                tau, losses = tau / 2, 0
                if tau < self.tr_min:  # collapsed: restart the region
                    tau = self.tr_init
        return tau

    def candidates(self) -> list[Point]:
        """``n_random`` uniform draws from Ω (none by default), then the trust region around the
        incumbent: its discrete neighbours, then ``n_local`` local moves; one uniform draw
        before any successful observation."""
        points = [self.space.sample(self.rng) for _ in range(self.n_random)]
        incumbent, _ = self.best
        if incumbent is None:
            return points or [self.space.sample(self.rng)]
        tau = self.trust_region()
        scales = (tau / 4, tau / 2, tau)
        neighbours = self.space.neighbours(incumbent)
        points += neighbours
        for j in range(self.n_local):
            centre = incumbent if j % 4 or not neighbours else neighbours[
                (j // 4) % len(neighbours)]
            points.append(self.space.perturb(centre, self.rng, scales[j % len(scales)]))
        return points

    def design(self) -> list[Point]:
        """The screening design evaluated after the seed point, before any draw: its
        drop-one soups (``screen``), then the seed point at the ends of the lambda range
        (``screen_scale``)."""
        if not self.seed_point:
            return []
        seed = self.space.seed_point()
        return ((self.space.drop_one(seed) if self.screen else [])
                + (self.space.scale_ends(seed) if self.screen_scale else []))

    def _propose(self) -> Point:
        seen = self._seen()
        todo = [p for p in self.design() if p.key() not in seen]
        if todo:
            return todo[0]
        n_ok = sum(v is not None for _, v in self.observations)
        if self.issued < self.n_initial or n_ok < 1:
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
        self.last_fit = {**info, "trust_region": self.trust_region(),
                         "sampled_max": float(values[choice] * info["y_std"] + info["y_mean"])}
        return fresh[choice]

    def _options(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in ((k, getattr(self, k)) for k in OPTIONS)}


def _one_blas_thread():
    """One BLAS thread for the small (<= 128 x 128) algebra of a suggestion: more threads only
    add synchronisation, and on a busy 2-core machine spinning threads made it 4x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")
