"""Sentence embeddings on Ray Data: a class UDF run by a pool of actors (CPU or GPU).

`Embedder` loads a sentence-transformers model once per actor and turns a batch's text column
into L2-normalised embeddings (cosine = dot product). `embed_dataset` wires it into
``Dataset.map_batches(Embedder, compute=ActorPoolStrategy(...), batch_size=..., num_gpus=...)``
(``concurrency=`` is deprecated for actor pools since Ray 2.51). The same
class runs without Ray (``Embedder(...)(batch)``), which is how the benchmark measures the
in-process baseline.

GPU actors: ``num_gpus_per_actor`` None means one GPU per actor when the cluster has GPUs and
none otherwise; an actor that got a GPU (Ray sets ``CUDA_VISIBLE_DEVICES``) runs on ``cuda``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from guardray import schema

logger = logging.getLogger(__name__)

EMBEDDING = "embedding"  # the column Embedder adds: (rows, dim) float tensor


class Embedder:
    """Ray Data class UDF: adds an ``embedding`` column computed from the ``text`` column.

    Args:
        model: ``embedded:all-minilm-l6-v2`` or a sentence-transformers folder / hub id
            (resolved inside the actor, so a worker uses its own copy of an embedded model).
        batch_size: sentences per forward pass.
        device: ``cpu``/``cuda``; None: ``cuda`` if this process sees a GPU, else ``cpu``.
        num_threads: torch intra-op threads on CPU (None: torch's default).
        max_seq_length: truncate inputs to this many tokens (None: the model's setting).
        dtype: ``float32`` or ``float16`` output.
        keep_columns: input columns passed through (default: all but ``text``).
    """

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 128,
        device: str | None = None,
        num_threads: int | None = None,
        max_seq_length: int | None = None,
        dtype: str = "float32",
        keep_columns: list[str] | None = None,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        from guardray.modeling.offline import resolve_model

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu" and num_threads:
            torch.set_num_threads(int(num_threads))
        path = resolve_model(model)
        self.model = SentenceTransformer(path, device=device)
        if max_seq_length:
            self.model.max_seq_length = int(max_seq_length)
        self.batch_size = batch_size
        self.dtype = np.dtype(dtype)
        self.keep_columns = keep_columns
        logger.info("embedder %s on %s (dim %s)", path, device, self.dimension)

    @property
    def dimension(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` L2-normalised embeddings."""
        if not texts:
            return np.zeros((0, self.dimension), self.dtype)
        emb = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(emb, dtype=self.dtype)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Numpy batch in, the kept columns plus ``embedding`` out."""
        texts = [str(t) for t in batch[schema.TEXT]]
        columns = self.keep_columns
        if columns is None:
            columns = [c for c in batch if c != schema.TEXT]
        out: dict[str, Any] = {c: batch[c] for c in columns}
        out[EMBEDDING] = self.encode(texts)
        return out


def gpu_actor_count(num_gpus_per_actor: float | None) -> float:
    """GPUs per embedding actor: the configured value, or 1 if the cluster has a GPU, else 0."""
    if num_gpus_per_actor is not None:
        return float(num_gpus_per_actor)
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def embed_dataset(ds, cfg, keep_columns: list[str]):
    """``ds.map_batches(Embedder, ...)`` configured by an `EmbedderConfig`.

    Args:
        ds: Ray Dataset with a ``text`` column and ``keep_columns``.
        cfg: `guardray.dedup.config.EmbedderConfig`.
        keep_columns: columns passed through next to ``embedding``.

    Returns:
        A lazy Dataset of ``keep_columns`` + ``embedding``.
    """
    from ray.data import ActorPoolStrategy

    num_gpus = gpu_actor_count(cfg.num_gpus_per_actor)
    concurrency = cfg.concurrency if isinstance(cfg.concurrency, int) else tuple(cfg.concurrency)
    # ray >= 2.51 deprecates map_batches(concurrency=...) for actor pools in favour of compute=
    pool = (ActorPoolStrategy(size=concurrency) if isinstance(concurrency, int)
            else ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1]))
    threads = max(1, int(cfg.num_cpus_per_actor))
    logger.info("embedding with %s: %s actor(s), batch %d, %s GPU(s)/actor", cfg.model,
                concurrency, cfg.batch_size, num_gpus)
    # no select_columns here: a separate Project operator needs task CPUs of its own, which
    # actors holding every CPU would starve (a deadlock seen on 2 cores); Embedder drops the
    # other columns itself.
    return ds.map_batches(
        Embedder,
        fn_constructor_kwargs={
            "model": cfg.model, "batch_size": cfg.batch_size, "device": cfg.device,
            "num_threads": None if num_gpus else threads, "max_seq_length": cfg.max_seq_length,
            "dtype": cfg.dtype, "keep_columns": list(keep_columns),
        },
        batch_size=cfg.batch_size,
        batch_format="numpy",
        compute=pool,
        num_gpus=num_gpus,
        num_cpus=cfg.num_cpus_per_actor,
    )
