"""Labelled data shared by the stages: tables with column and label mapping, public benchmarks.

Modules:
    labels: safe/unsafe label normalisation and the errors of labelled data.
    tables: JSONL / CSV / Parquet files and shard folders (local or ``s3://``) as labelled
        pandas frames with the sample columns (`DataSpec`, `load_labeled`).
    benchmarks: the public test sets of GuardFormer 4.1 (hub loaders, binary label mappings).

Importing this package is cheap: each name loads its module on first use.
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "DatasetError": "labels",
    "MissingDependencyError": "labels",
    "normalize_labels": "labels",
    "is_missing": "labels",
    "SAFE_NAMES": "labels",
    "UNSAFE_NAMES": "labels",
    "ROW": "tables",
    "DataSpec": "tables",
    "LabeledData": "tables",
    "load_labeled": "tables",
    "parse_data_spec": "tables",
    "read_table": "tables",
    "detect_format": "tables",
    "FORMATS": "tables",
    "BENCHMARKS": "benchmarks",
    "Benchmark": "benchmarks",
    "benchmark": "benchmarks",
    "load_hub_frame": "benchmarks",
})
