"""Near-duplicate removal: exact (normalised-text hash) and semantic (sentence embeddings).

Modules (pure ones import neither Ray nor files):

- `normalize` (pure): text normalisation, text hash, row key.
- `greedy` (pure): the "keep one representative" rule, its exact all-pairs reference and the
  per-mini-batch baseline of the GuardFormer/UniGuard appendix (A.2).
- `partition` (pure, faiss): spherical k-means, multi-probe assignment, oversized-cluster split.
- `semantic` (pure, faiss): global SemDeDup-style dedup with bounded memory.
- `metrics` (pure): exact near-duplicate pairs, pair recall, agreement.
- `synthetic` (pure): embeddings with planted near-duplicates (tests, benchmarks).
- `plan` (pure): processing order, exact duplicates, per-scope near dedup on the driver.
- `embed` (Ray Data): sentence-transformers actor pool.
- `distributed` (Ray Data): the global method's pairwise step as groupby-cluster/map_groups.
- `stage` (Ray Data + I/O): `dedup_dataset` for in-process callers, `run_dedup` for the job.
- `removed`: schema and atomic writer of the removed-rows file.
- `config`: `DedupConfig` of ``guardray dedup`` / ``jobs/dedup.py``.

Importing this package imports nothing heavy.
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "DedupConfig": "config",
    "DedupSettings": "config",
    "run_dedup": "stage",
    "dedup_dataset": "stage",
    "check_paths": "stage",
})
