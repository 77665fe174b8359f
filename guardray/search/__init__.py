"""The ``search`` stage: UniGuard, a merge search over fine-tuned guard classifiers on Ray Tune
(UniGuard appendix A.5, A.5.1, A.5.2).

Modules (pure numpy first, then the Ray/torch side):
    space: the search space Ω (top-k subset, simplex weights, method + parameters,
        instruction) and the T = 1 seed point.
    posterior: Bayesian linear regression on random Fourier features (the surrogate).
    policies, thompson, policy_registry: random (eq. 8), epsilon-greedy (eq. 9) and Thompson
        sampling, seeded, with JSON state.
    recipe: a point as a merge plan and as a ``guardray merge`` recipe.
    searcher: `MergeSearcher`, the ``ray.tune.search.Searcher`` adapter.
    config: `SearchConfig` of ``guardray search`` / ``jobs/search.py``.
    pool, weights, objective, inputs: candidates, their weights, the validation objective.
    trainable: one trial = one in-memory merge + one validation pass.
    run: `run_search` (Tune fit / resume); export, report: UniGuard, recipe, report.

Importing this package imports nothing heavy (no torch, transformers or Ray).
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "SearchConfig": "config",
    "run_search": "run",
    "prepare": "inputs",
    "MergeSearcher": "searcher",
    "tune_param_space": "searcher",
    "SearchSpace": "space",
    "Point": "space",
    "SpaceError": "space",
    "make_policy": "policy_registry",
    "policy_from_state": "policy_registry",
    "PoolError": "pool",
    "build_pool": "pool",
    "MODEL_DIR": "export",
    "RECIPE": "export",
})
