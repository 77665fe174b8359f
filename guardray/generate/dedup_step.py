"""The generate job's last step: exact and semantic near-duplicate removal of its output.

The raw shards (``gen-*``, ``div-*``) stay where generation wrote them, so an interrupted or
extended run still resumes task by task; the dedup step reads all of them and writes the
kept rows to ``{output_dir}/dedup`` (shards, ``removed/``, ``manifest.json``) with the dedup
job's own code (`guardray.dedup.stage.run_dedup`). It is deterministic, so a rerun simply
rebuilds that folder from the raw shards (old shards are replaced only after the new ones
are written).
"""

from __future__ import annotations

import logging
from typing import Any

from guardray.dedup import DedupConfig, DedupSettings
from guardray.generate.config import GenerateConfig
from guardray.io import uris

log = logging.getLogger(__name__)

DEDUP_DIR = "dedup"


def dedup_output_dir(cfg: GenerateConfig) -> str:
    """Where the deduplicated samples of a generate run go: ``{output_dir}/dedup``."""
    return uris.join_uri(uris.parse_uri(cfg.output_dir).uri, DEDUP_DIR)


def dedup_config(cfg: GenerateConfig) -> DedupConfig:
    """The dedup job config equivalent to ``cfg.dedup`` for this run's folders."""
    settings = cfg.dedup.model_dump(include=set(DedupSettings.model_fields))
    return DedupConfig(
        **settings, input_dir=uris.parse_uri(cfg.output_dir).uri,
        output_dir=dedup_output_dir(cfg), overwrite=True, ray=cfg.ray,
        storage_options=cfg.storage_options,
    )


def run_dedup_step(cfg: GenerateConfig) -> dict[str, Any]:
    """Dedup everything ``cfg``'s run generated; Ray must be initialised.

    Returns:
        The summary the generate manifest records: ``{"enabled": False}`` when the step is
        off, else ``enabled``, ``method``, ``scope``, ``threshold``, ``output_dir`` and the
        dedup counts (``in``, ``out``, ``dropped`` by reason).
    """
    if not cfg.dedup.enabled:
        log.info("dedup: disabled (dedup.enabled=false); the raw shards are the output")
        return {"enabled": False}
    from guardray.dedup import run_dedup

    dcfg = dedup_config(cfg)
    log.info("dedup: %s method, %s scope, threshold %.3f -> %s", dcfg.method, dcfg.scope,
             dcfg.threshold, dcfg.output_dir)
    result = run_dedup(dcfg)
    return {"enabled": True, "method": dcfg.method, "scope": dcfg.scope,
            "threshold": dcfg.threshold, "output_dir": dcfg.output_dir, **result["counts"]}
