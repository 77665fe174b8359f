"""The ``pipeline`` job: every stage chained on one Ray instance, one report.

Modules:
    config: ``PipelineConfig`` (each stage's own YAML plus overrides).
    stages: the stages in order, and which of them exist yet.
    wiring: each stage's config, with the folders that chain them (pure).
    runner: `run_pipeline`, the run and its ``report.md``.
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "PipelineConfig": "config",
    "run_pipeline": "runner",
})
