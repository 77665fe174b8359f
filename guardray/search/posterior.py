"""The surrogate posterior of the Thompson-sampling merge search (pure numpy).

Model (Bayesian linear regression on random Fourier features, i.e. a sparse-spectrum
approximation of a Gaussian process with an RBF kernel; Rahimi & Recht 2007,
Lázaro-Gredilla et al. 2010, Hernández-Lobato et al. 2014 for its use in Thompson sampling):

    z = featurise(w, method, params, instruction) in [0, 1]^d      (`SearchSpace.features`)
    phi(z) = sqrt(2 / D) cos(W z + b),  W_ij = E_ij / l_j,  E_ij ~ N(0, 1),  b_i ~ U[0, 2 pi)
    f(z) = theta^T phi(z),  theta ~ N(0, s^2 I)                    (prior; D features)
    y = (objective - mean(objectives)) / std(objectives) = f(z) + eps,  eps ~ N(0, sigma^2)

``phi(z)^T phi(z') -> exp(-sum_j (z_j - z'_j)^2 / (2 l_j^2))`` as D grows, so the prior is
(approximately) a GP of variance s^2 with an RBF kernel of lengthscales l_j (one per input
dimension: automatic relevance determination, ARD) on the standardised objective. The base
draw ``(E, b)`` is fixed by a seed and only rescaled for each l (`FourierFeatures.scaled`), so
hyperparameter choices compare the same random features. The posterior of theta is Gaussian,
in closed form:

    A = Phi^T Phi / sigma^2 + I / s^2
    Sigma_N = A^{-1},   mu_N = Sigma_N Phi^T y / sigma^2

One Thompson draw is ``theta ~ N(mu_N, Sigma_N)``: a whole function ``theta^T phi(.)`` that can
be maximised over any number of candidate points, at O(D) per point, without the O(n^3)
joint sampling an exact GP needs over those points. The hyperparameters (l, s^2, sigma^2)
are picked from a small grid by the log evidence (type-II maximum likelihood)

    log p(y) = log N(y | 0, K),  K = s^2 Phi Phi^T + sigma^2 I
             = -1/2 y^T K^{-1} y - 1/2 log det K - n/2 log(2 pi),

O(n^3 + n^2 D) per grid point for n observations (n is tens here), via a Cholesky factor.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class FourierFeatures:
    """``phi(z) = sqrt(2/D) cos(W z + b)``: D random Fourier features of an RBF kernel.

    Attributes:
        W: (D, d) frequencies, ``N(0, 1/l^2)``.
        b: (D,) phases, ``U[0, 2 pi)``.
    """

    W: np.ndarray
    b: np.ndarray

    @classmethod
    def draw(cls, dim: int, n_features: int, lengthscale: float,
             rng: np.random.Generator) -> FourierFeatures:
        """Features of an RBF kernel with ``lengthscale`` on ``dim``-dimensional inputs."""
        W = rng.normal(0.0, 1.0 / lengthscale, size=(n_features, dim))
        b = rng.uniform(0.0, 2 * math.pi, size=n_features)
        return cls(W, b)

    @classmethod
    def scaled(cls, E: np.ndarray, b: np.ndarray, lengthscales) -> FourierFeatures:
        """Features of an ARD RBF kernel from a standard-normal base draw.

        Args:
            E: (D, d) standard-normal frequencies.
            b: (D,) phases in ``[0, 2 pi)``.
            lengthscales: a scalar or (d,) per-dimension lengthscales ``l_j``.

        Returns:
            features with ``W = E / l`` (column j divided by ``l_j``).
        """
        ls = np.broadcast_to(np.asarray(lengthscales, dtype=np.float64), (E.shape[1],))
        if np.any(ls <= 0):
            raise ValueError(f"lengthscales must be > 0, got {ls.tolist()}")
        return cls(E / ls[None, :], b)

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        """(n, d) inputs -> (n, D) features."""
        Z = np.atleast_2d(np.asarray(Z, dtype=np.float64))
        return math.sqrt(2.0 / self.b.size) * np.cos(Z @ self.W.T + self.b)


@dataclasses.dataclass(frozen=True)
class Posterior:
    """``N(mean, cov)`` over the regression weights theta.

    Attributes:
        mean: (D,) posterior mean ``mu_N``.
        cov: (D, D) posterior covariance ``Sigma_N``.
    """

    mean: np.ndarray
    cov: np.ndarray

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One draw of theta, (D,)."""
        chol = np.linalg.cholesky(self.cov + 1e-10 * np.eye(self.mean.size))
        return self.mean + chol @ rng.standard_normal(self.mean.size)


def blr_posterior(Phi: np.ndarray, y: np.ndarray, prior_var: float = 1.0,
                  noise_var: float = 0.1) -> Posterior:
    """The Gaussian posterior of Bayesian linear regression.

    Args:
        Phi: (n, D) design matrix.
        y: (n,) targets.
        prior_var: ``s^2`` of the prior ``theta ~ N(0, s^2 I)``.
        noise_var: ``sigma^2`` of the observation noise.

    Returns:
        ``Sigma_N = (Phi^T Phi / sigma^2 + I / s^2)^{-1}``, ``mu_N = Sigma_N Phi^T y / sigma^2``.
    """
    Phi = np.atleast_2d(np.asarray(Phi, dtype=np.float64))
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if Phi.shape[0] != y.size:
        raise ValueError(f"{Phi.shape[0]} rows of features but {y.size} targets")
    D = Phi.shape[1]
    A = Phi.T @ Phi / noise_var + np.eye(D) / prior_var
    chol = np.linalg.cholesky(A)
    cov = np.linalg.solve(chol.T, np.linalg.solve(chol, np.eye(D)))
    cov = (cov + cov.T) / 2
    mean = cov @ (Phi.T @ y) / noise_var
    return Posterior(mean, cov)


def log_evidence(Phi: np.ndarray, y: np.ndarray, prior_var: float = 1.0,
                 noise_var: float = 0.1) -> float:
    """``log N(y | 0, s^2 Phi Phi^T + sigma^2 I)``, the marginal likelihood of the data."""
    Phi = np.atleast_2d(np.asarray(Phi, dtype=np.float64))
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    K = prior_var * Phi @ Phi.T + noise_var * np.eye(y.size)
    chol = np.linalg.cholesky(K)
    alpha = np.linalg.solve(chol, y)
    return float(-0.5 * alpha @ alpha - np.log(np.diag(chol)).sum()
                 - 0.5 * y.size * math.log(2 * math.pi))


def standardise(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(y - mean) / std`` with the std floored (identical values give zeros), and both."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean()) if values.size else 0.0
    std = float(values.std()) if values.size > 1 else 1.0
    std = max(std, 1e-3)
    return (values - mean) / std, mean, std
