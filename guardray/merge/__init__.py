"""Model merging: linear / model soup, task arithmetic, TIES, DARE, SLERP and Model Stock.

- `guardray.merge.methods`: the pure per-tensor math (uniguard appendix A.5 eq. 1-7,
  safeguard-merging section 3 and appendix D).
- `guardray.merge.config`: the MergeKit-schema YAML config (`load_merge_config`).
- `guardray.merge.executor`: the streaming, memory-bounded merge of checkpoints on disk
  (`run_merge`), used by ``guardray merge CONFIG.yaml OUTPUT_DIR``.
- `guardray.merge.api`: merging state dicts already in memory (`merge_state_dicts`).

Importing this package is cheap: torch and the rest load when a name below is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MergeConfig": "guardray.merge.config",
    "load_merge_config": "guardray.merge.config",
    "run_merge": "guardray.merge.executor",
    "MergeResult": "guardray.merge.executor",
    "merge_state_dicts": "guardray.merge.api",
    "merge_with_config": "guardray.merge.api",
    "MergeError": "guardray.merge.engine",
    "CheckpointError": "guardray.merge.checkpoint",
    "method_names": "guardray.merge.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'guardray.merge' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
