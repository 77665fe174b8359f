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
import threading
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
        self.reused_keys: list[str] = []
        self._lock = threading.Lock()

    def reused(self, key: str, stage_cfg: Any, result_uri: str) -> dict[str, Any] | None:
        """The saved result at ``result_uri`` when step ``key`` finished with this config in a
        previous run (and every step asked about before it was reused); None: the step must
        run, and so must every later one."""
        if self.reusing and self.done.get(key) == fingerprint(stage_cfg):
            try:
                result = uris.read_json(result_uri, self.so)
            except FileNotFoundError:
                result = None
            if isinstance(result, dict):
                log.info("pipeline: %s finished in a previous run with this config; reused %s",
                         key, result_uri)
                self.reused_keys.append(key)
                return result
        self.reusing = False
        return None

    def record(self, key: str, stage_cfg: Any) -> None:
        """Mark step ``key`` finished with this config (after its own outputs are written).
        Thread-safe: a step run in a background thread (the LLM judge) records itself."""
        with self._lock:
            self.done[key] = fingerprint(stage_cfg)
            uris.write_json_atomic(self.uri, dict(self.done), self.so)

    def step(self, key: str, stage_cfg: Any, result_uri: str,
             run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``run()``'s result, or the saved one (`reused`); a step that runs is recorded."""
        saved = self.reused(key, stage_cfg, result_uri)
        if saved is not None:
            return saved
        result = run()
        self.record(key, stage_cfg)
        return result
