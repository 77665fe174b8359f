"""Skipping the stages a previous run of the same pipeline finished (a resubmitted job).

The pipeline keeps a ledger, ``{output_dir}/_stages.json``: for each finished training or
evaluation step (pretrain, finetune, merge, each evaluation, each judge run) the fingerprint
of its resolved config (SHA-256 of its JSON). A rerun with the same ``output_dir`` reuses a
step's saved result (its ``summary.json`` / ``metrics.json``) when the fingerprint matches
and every earlier step was reused too; from the first step that runs again, all later ones
run (their inputs may have changed). The data stages before them (seed, ingest, generate,
data) always run: they are deterministic and resume their own finished work, so they write
the same rows again.

The ledger is written after each step's own outputs and manifest, atomically: a driver
killed mid-step leaves that step out, and the rerun redoes it (its outputs are rewritten with
``overwrite``), so nothing is duplicated or half-kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from guardray.io import uris
from guardray.io.manifest import to_jsonable

log = logging.getLogger(__name__)

LEDGER = "_stages.json"


def fingerprint(stage_cfg: Any) -> str:
    """SHA-256 of a resolved stage config's canonical JSON."""
    data = json.dumps(to_jsonable(stage_cfg, "config"), sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


class Ledger:
    """The steps a previous run finished, and the reuse rule of the module docstring."""

    def __init__(self, output_dir: str, storage_options: dict | None = None) -> None:
        self.uri = uris.join_uri(uris.parse_uri(output_dir).uri, LEDGER)
        self.so = storage_options or None
        try:
            self.done: dict[str, str] = dict(uris.read_json(self.uri, self.so))
        except FileNotFoundError:
            self.done = {}
        self.reusing = True
        self.reused: list[str] = []

    def step(self, key: str, stage_cfg: Any, result_uri: str,
             run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``run()``'s result, or the saved result at ``result_uri`` when step ``key`` finished
        with this config in a previous run (and every step before it was reused)."""
        fp = fingerprint(stage_cfg)
        if self.reusing and self.done.get(key) == fp:
            try:
                result = uris.read_json(result_uri, self.so)
            except FileNotFoundError:
                result = None
            if isinstance(result, dict):
                log.info("pipeline: %s finished in a previous run with this config; reused %s",
                         key, result_uri)
                self.reused.append(key)
                return result
        self.reusing = False
        result = run()
        self.done[key] = fp
        uris.write_json_atomic(self.uri, self.done, self.so)
        return result
