"""Configuration of the dedup job (``guardray dedup`` / ``jobs/dedup.py``) and stage.

Example (``configs/dedup.yaml``)::

    job: dedup
    input_dir: outputs/generate
    output_dir: outputs/dedup
    scope: policy          # near-duplicates only within a policy (global: across policies)
    method: global         # global | per_batch | exact_only
    threshold: 0.9
    embedder: {model: embedded:all-minilm-l6-v2, batch_size: 64, concurrency: 1}
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from guardray.config.base import StageConfig, StrictModel

SCOPES = ("policy", "global")
METHODS = ("global", "per_batch", "exact_only")


class EmbedderConfig(StrictModel):
    """Sentence-embedding actors (Ray Data ``map_batches`` with a class UDF).

    Attributes:
        model: ``embedded:all-minilm-l6-v2`` (offline default) or any sentence-transformers
            model folder / hub id reachable from the workers.
        batch_size: sentences per ``map_batches`` batch (and per ``encode`` call).
        concurrency: embedding actors (a fixed pool), or ``[min, max]`` to autoscale.
        num_gpus_per_actor: GPUs per actor; None: 1 when the cluster has GPUs, else 0.
        num_cpus_per_actor: CPUs per actor (torch intra-op threads follow it).
        device: ``cpu``/``cuda``; None: ``cuda`` when the actor got a GPU.
        max_seq_length: truncate inputs to this many tokens (None: the model's default).
        dtype: dtype of gathered embeddings (float16 halves driver memory at 10M+ rows).
    """

    model: str = "embedded:all-minilm-l6-v2"
    batch_size: int = Field(default=128, ge=1)
    concurrency: int | tuple[int, int] = 1
    num_gpus_per_actor: float | None = Field(default=None, ge=0)
    num_cpus_per_actor: float = Field(default=1.0, gt=0)
    device: str | None = None
    max_seq_length: int | None = Field(default=None, ge=8)
    dtype: Literal["float32", "float16"] = "float32"

    @model_validator(mode="after")
    def _check_concurrency(self) -> "EmbedderConfig":
        c = self.concurrency
        bad = (c < 1) if isinstance(c, int) else (c[0] < 1 or c[1] < c[0])
        if bad:
            raise ValueError(
                f"concurrency must be >= 1 or [min, max] with 1 <= min <= max, got {c}")
        return self


class GlobalMethodConfig(StrictModel):
    """Knobs of the global (SemDeDup-style) method; see `guardray.dedup.semantic`.

    Attributes:
        n_clusters: k-means clusters per scope; None: ``ceil(rows / target_cluster_size)``.
        target_cluster_size: rows per cluster when ``n_clusters`` is None.
        probes: nearest clusters searched per row (1 = plain SemDeDup).
        max_neighbors: earliest earlier neighbours kept per row (bounds memory).
        max_cluster_size: clusters above this are split (None: 8 x target).
        niter: k-means iterations.
        max_points_per_centroid: k-means training sample per centroid.
        block_size: similarity tile edge (memory ~ block_size^2 floats).
        distributed: run the pairwise step on Ray Data (groupby cluster -> map_groups) instead
            of gathering all embeddings on the driver (`guardray.dedup.distributed`).
    """

    n_clusters: int | None = Field(default=None, ge=1)
    target_cluster_size: int = Field(default=1000, ge=2)
    probes: int = Field(default=3, ge=1)
    max_neighbors: int = Field(default=32, ge=1)
    max_cluster_size: int | None = Field(default=None, ge=2)
    niter: int = Field(default=10, ge=1)
    max_points_per_centroid: int = Field(default=64, ge=1)
    block_size: int = Field(default=2048, ge=16)
    distributed: bool = False


class DedupSettings(StrictModel):
    """How rows are deduplicated: shared by the dedup job and the generate job's dedup step.

    Attributes:
        scope: ``policy`` (rows are compared only within their policy) or ``global``.
        method: ``global`` (SemDeDup partition, whole scope), ``per_batch`` (the paper's
            per-mini-batch dedup: only within consecutive batches of ``per_batch_size`` rows
            in id order), or ``exact_only`` (normalised-text hash only, no embeddings).
        threshold: cosine similarity at or above which two rows are near-duplicates.
        per_batch_size: batch size of the ``per_batch`` method.
        embedder: embedding actors.
        global_method: knobs of the ``global`` method.
        seed: k-means seed.
    """

    scope: Literal["policy", "global"] = "policy"
    method: Literal["global", "per_batch", "exact_only"] = "global"
    threshold: float = Field(default=0.9, gt=0, le=1)
    per_batch_size: int = Field(default=1024, ge=1)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    global_method: GlobalMethodConfig = Field(default_factory=GlobalMethodConfig)
    seed: int = 0


class DedupConfig(DedupSettings, StageConfig):
    """Exact and semantic near-duplicate removal of sample shards (the dedup job).

    Attributes:
        input_dir: folder of sample shards (local or ``s3://``).
        output_dir: kept rows as shards, ``removed/removed-00000.parquet`` and ``manifest.json``.
        overwrite: replace shards already in ``output_dir`` (else that is an error).
        ray: Ray connection.
        storage_options: S3 settings for ``s3://`` folders.

    The dedup knobs (scope, method, threshold, ...) are those of `DedupSettings`.
    """

    JOB_NAME: ClassVar[str] = "dedup"

    input_dir: str = "outputs/generate"
    output_dir: str = "outputs/dedup"
    overwrite: bool = False
