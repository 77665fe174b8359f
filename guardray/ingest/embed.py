"""Embeddings of distinct texts on Ray Data, for near-duplicate groups.

The same model and settings as the dedup stage (its ``embedder`` section), so group and dedup
thresholds are on one cosine scale. The dedup stage does not export its embedding actor, so
this is a small copy of it: a class UDF that loads a sentence-transformers model once per
actor and returns L2-normalised embeddings with the row position they belong to.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

POSITION, TEXT, EMBEDDING = "position", "text", "embedding"


class TextEmbedder:
    """Ray Data class UDF: ``{position, text}`` batch -> ``{position, embedding}``.

    Args:
        model: ``embedded:all-minilm-l6-v2`` or a sentence-transformers folder / hub id.
        batch_size: sentences per forward pass.
        device: ``cpu``/``cuda``; None: ``cuda`` when this actor sees a GPU.
        num_threads: torch intra-op threads on CPU.
        max_seq_length: truncate inputs to this many tokens.
    """

    def __init__(self, model: str, *, batch_size: int = 128, device: str | None = None,
                 num_threads: int | None = None, max_seq_length: int | None = None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        from guardray.modeling.offline import resolve_model

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu" and num_threads:
            torch.set_num_threads(int(num_threads))
        self.model = SentenceTransformer(resolve_model(model), device=device)
        if max_seq_length:
            self.model.max_seq_length = int(max_seq_length)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[TEXT]]
        emb = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        return {POSITION: batch[POSITION], EMBEDDING: np.asarray(emb, np.float32)}


def embed_texts(texts: list[str], cfg) -> np.ndarray:
    """(len(texts), dim) float32 normalised embeddings, in the order of ``texts``.

    Args:
        texts: the texts (Ray must be initialised).
        cfg: the dedup stage's embedder settings (``DedupSettings().embedder``): model,
            batch_size, concurrency, num_gpus_per_actor, num_cpus_per_actor, device,
            max_seq_length.
    """
    import ray
    from ray.data import ActorPoolStrategy

    if not texts:
        return np.zeros((0, 0), np.float32)
    num_gpus = cfg.num_gpus_per_actor
    if num_gpus is None:
        num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    size = cfg.concurrency
    pool = (ActorPoolStrategy(size=size) if isinstance(size, int)
            else ActorPoolStrategy(min_size=size[0], max_size=size[1]))
    # by length: a batch is padded to its longest text, and one 2,000-token jailbreak in a
    # batch of chit-chat makes the whole batch cost as much as 64 jailbreaks (3x on real data)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    ds = ray.data.from_items([{POSITION: i, TEXT: texts[i]} for i in order])
    logger.info("embedding %d distinct texts with %s", len(texts), cfg.model)
    out = ds.map_batches(
        TextEmbedder,
        fn_constructor_kwargs={
            "model": cfg.model, "batch_size": cfg.batch_size, "device": cfg.device,
            "num_threads": None if num_gpus else max(1, int(cfg.num_cpus_per_actor)),
            "max_seq_length": cfg.max_seq_length},
        batch_size=cfg.batch_size, batch_format="numpy", compute=pool, num_gpus=num_gpus,
        num_cpus=cfg.num_cpus_per_actor)
    emb: np.ndarray | None = None
    filled = np.zeros(len(texts), bool)
    for batch in out.iter_batches(batch_format="numpy", batch_size=None):
        vectors = np.asarray(batch[EMBEDDING], np.float32)
        if emb is None:
            emb = np.empty((len(texts), vectors.shape[1]), np.float32)
        pos = np.asarray(batch[POSITION], np.int64)
        emb[pos] = vectors
        filled[pos] = True
    if emb is None or not filled.all():
        raise RuntimeError(f"embedding returned {int(filled.sum())} of {len(texts)} texts")
    return emb
