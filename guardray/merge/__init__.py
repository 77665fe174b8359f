"""Model merging: linear / model soup, task arithmetic, TIES, DARE, SLERP and Model Stock.

- `guardray.merge.methods`: the pure per-tensor math (uniguard appendix A.5 eq. 1-7,
  safeguard-merging section 3 and appendix D).
- `guardray.merge.config`: the MergeKit-schema YAML config (`load_merge_config`).
- `guardray.merge.executor`: the streaming, memory-bounded merge of checkpoints on disk
  (`run_merge`), used by ``guardray merge CONFIG.yaml OUTPUT_DIR``.
- `guardray.merge.api`: merging state dicts already in memory (`merge_state_dicts`).

Importing this package is cheap: torch and the rest load when a name below is first used.
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "MergeConfig": "config",
    "load_merge_config": "config",
    "run_merge": "executor",
    "MergeResult": "executor",
    "merge_state_dicts": "api",
    "merge_with_config": "api",
    "MergeError": "engine",
    "CheckpointError": "checkpoint",
    "method_names": "registry",
    "check_compatible": "engine",
    "build_job": "executor",
})
