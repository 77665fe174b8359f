"""The GIP data path on Ray Data: sample shards -> tokenised rows -> equal-step batches per rank.

GuardFormer 3.3 pretrains on ``"{policy description}\\nQuery: {text} [SEP] {rationale}"`` with
rationale dropout (no rationale at inference). The pipeline streams, so memory stays flat
whatever the number of rows:

1. `read_gip_dataset`: shard folder (local or ``s3://``) -> rows of the wanted splits, only
   the columns GIP needs (filter and projection are pushed into the Parquet read).
2. `tokenize_dataset`: an actor pool holding the (fast) tokenizer turns each row into
   ``query_ids`` (``tokenizer(format_gip_input(desc, text))``, specials included),
   ``rationale_ids`` (no specials), ``label`` and ``row_key`` (stable hash of the id).
3. `split_for_ranks`: the row order is a function of the seed and the rows only, never of
   Ray's scheduling (which decides the order of an actor pool's outputs, and which rank a
   ``streaming_split`` hands each block to): every row gets a key, a hash of (seed, row key,
   its tokens and label), the rows are sorted by it (an explicit shuffle by key), the result
   is materialised once (every epoch then reads the object store instead of re-reading and
   re-tokenising the shards) and cut into ``world_size`` equal parts by position: rank r
   always trains on part r (`rank_dataset_name`). Two runs with the same data and seed see
   the same rows in the same order, so a resumed run continues exactly where it stopped.
4. `iter_gip_batches`: every rank runs exactly `steps_per_epoch` steps (it stops there, and
   raises if its part runs out first: DeepSpeed hangs if ranks disagree on the number of
   steps), shuffling windows of rows with a generator seeded by ``(seed, epoch, window)``.
5. `collate_batch` (`guardray.pretrain.collate`): rationale dropout, truncation, dynamic
   padding, MLM masking; each row's draws depend on ``(seed, epoch, row_key)`` only.

Ray is imported inside functions only.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from guardray import schema as S
from guardray.io.ray_data import BLOCK_BYTES, check_block_bytes
from guardray.pretrain.collate import (
    BATCH_KEYS,
    IGNORE_INDEX,
    LABEL,
    QUERY_IDS,
    RATIONALE_IDS,
    ROW_KEY,
    GIPDataError,
    GIPDataParams,
    TokenizerInfo,
    check_splits,
    collate_batch,
)

__all__ = [
    "BATCH_KEYS", "IGNORE_INDEX", "GIPDataError", "GIPDataParams", "GIPTokenizer",
    "TokenizerInfo", "check_policy_ids", "collate_batch", "count_rows", "iter_gip_batches",
    "mask_fraction", "rank_dataset_name", "read_gip_dataset", "row_key", "split_for_ranks",
    "steps_per_epoch", "tokenize_dataset",
]

log = logging.getLogger(__name__)

# Columns of the sample schema that GIP reads.
READ_COLUMNS = (S.ID, S.POLICY_ID, S.TEXT, S.RATIONALE, S.LABEL)


def read_gip_dataset(path: str, storage_options: dict | None = None, *,
                     splits: Sequence[str] = ("train",), block_bytes: int = BLOCK_BYTES,
                     **read_kwargs: Any):
    """Sample shards as a Ray Dataset of the GIP columns, rows of ``splits`` only.

    Args:
        path: shard folder (local, ``file://`` or ``s3://``), see
            `guardray.io.ray_data.read_shards_dataset`.
        storage_options: S3 settings.
        splits: values of the ``split`` column to keep (subset of `guardray.schema.SPLITS`).
        block_bytes: in-memory bytes of Parquet row groups packed into one read task (and so
            one block). Ray 2.60's Parquet reader packs up to 128 MiB by default, ignoring
            ``override_num_blocks``: a million-row shard set became 4 blocks of ~300k rows,
            4 tokenizer tasks of minutes each and GiBs in flight. Smaller blocks stream.
            An explicit ``RAY_DATA_PARQUET_BIN_PACKING_BYTES`` in the environment wins.
        **read_kwargs: passed on to ``ray.data.read_parquet``.

    Returns:
        Lazy ``ray.data.Dataset`` with columns ``id, policy_id, text, rationale, label``.

    Raises:
        GIPDataError: empty or unknown splits. NoShardsError / ShardSchemaError /
            CorruptShardError: from the shard reader, naming the folder or file.
    """
    from ray.data.expressions import col

    from guardray.io import read_shards_dataset

    wanted = check_splits(splits)
    try:
        check_block_bytes(block_bytes)
    except ValueError as exc:
        raise GIPDataError(str(exc)) from None
    ds = read_shards_dataset(path, storage_options, block_bytes=block_bytes, **read_kwargs)
    return ds.filter(expr=col(S.SPLIT).is_in(list(wanted))).select_columns(list(READ_COLUMNS))


def row_key(row_id: str) -> int:
    """Stable 64-bit key of a row id (BLAKE2b, 8 bytes little-endian) as a Python int."""
    return int.from_bytes(hashlib.blake2b(row_id.encode("utf-8"), digest_size=8).digest(),
                          "little")


def row_keys(ids: Sequence[str]) -> np.ndarray:
    """`row_key` of many ids: [N] uint64."""
    raw = b"".join(hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest() for i in ids)
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


class GIPTokenizer:
    """``map_batches`` class UDF: sample rows (pyarrow) -> tokenised GIP rows (pyarrow).

    Args:
        tokenizer_path: local folder (or hub id) of a Hugging Face fast tokenizer.
        descriptions: policy id -> policy description.
        max_length: ids per column at most (queries keep their specials when cut).
    """

    def __init__(self, tokenizer_path: str, descriptions: Mapping[str, str], max_length: int):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(tokenizer_path)
        if not getattr(self.tok, "is_fast", False):
            raise GIPDataError(f"{tokenizer_path}: GIP needs a fast tokenizer, got "
                               f"{type(self.tok).__name__}")
        self.descriptions = dict(descriptions)
        self.max_length = max_length
        # The Rust tokenizer directly: 2-4x faster than the Python wrapper on these inputs (no
        # offsets, no BatchEncoding); same ids (tests compare with ``tokenizer(...)``).
        self.backend = copy.deepcopy(self.tok.backend_tokenizer)
        self.backend.enable_truncation(max_length)
        self.backend.no_padding()
        self.encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)

    def __call__(self, table):
        import pyarrow as pa

        from guardray.policies.render import format_gip_input

        policy_ids = table.column(S.POLICY_ID).to_pylist()
        unknown = sorted(set(policy_ids) - self.descriptions.keys())
        if unknown:
            raise GIPDataError(f"unknown policy_id(s) {unknown}; known policies: "
                               f"{sorted(self.descriptions)}")
        labels = table.column(S.LABEL).to_numpy().astype(np.int64)
        bad = sorted(set(labels.tolist()) - {S.SAFE, S.UNSAFE})
        if bad:
            raise GIPDataError(f"labels must be {S.SAFE} (safe) or {S.UNSAFE} (unsafe), got "
                               f"{bad}")
        queries = [format_gip_input(self.descriptions[p], t)
                   for p, t in zip(policy_ids, table.column(S.TEXT).to_pylist())]
        rationales = table.column(S.RATIONALE).to_pylist()
        q_ids = [e.ids for e in self.encode(queries, add_special_tokens=True)]
        r_ids = [e.ids for e in self.encode(rationales, add_special_tokens=False)]
        ids_type = pa.list_(pa.int32())
        return pa.table({
            QUERY_IDS: pa.array(q_ids, type=ids_type),
            RATIONALE_IDS: pa.array(r_ids, type=ids_type),
            LABEL: pa.array(labels, type=pa.int64()),
            ROW_KEY: pa.array(row_keys(table.column(S.ID).to_pylist()), type=pa.uint64()),
        })


def tokenize_dataset(ds, tokenizer_path: str, descriptions: Mapping[str, str],
                     params: GIPDataParams, *, num_actors: int | tuple[int, int] = 1,
                     num_cpus: float = 1.0, batch_size: int = 1024):
    """Tokenise GIP rows with an actor pool that holds the tokenizer (lazy).

    Args:
        ds: output of `read_gip_dataset` (columns ``id, policy_id, text, rationale, label``).
        tokenizer_path: local folder of the model's fast tokenizer (every Ray node must see
            it: a shared path, or a folder shipped with the job).
        descriptions: policy id -> policy description (``P_desc``).
        params: `GIPDataParams` (``max_length``).
        num_actors: tokenizer actors: a fixed count or ``(min, max)`` for an autoscaling pool.
        num_cpus: CPUs each actor reserves.
        batch_size: rows per tokenisation call.

    Returns:
        Lazy ``ray.data.Dataset`` with ``query_ids`` (list<int32>), ``rationale_ids``
        (list<int32>), ``label`` (int64), ``row_key`` (uint64).

    Raises:
        GIPDataError: no descriptions. While the Dataset runs (raised through Ray): an
            unknown ``policy_id`` (naming it and the known ids), a label outside {0, 1}.
    """
    import ray

    if not descriptions:
        raise GIPDataError("descriptions is empty: pass policy id -> description for every "
                           "policy in the data")
    sizes = (num_actors, num_actors) if isinstance(num_actors, int) else tuple(num_actors)
    return ds.map_batches(
        GIPTokenizer,
        fn_constructor_args=(tokenizer_path, dict(descriptions), params.max_length),
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=sizes[0], max_size=sizes[1]),
        num_cpus=num_cpus,
    )


ORDER_KEY = "_order"


def rank_dataset_name(rank: int) -> str:
    """The name under which the trainer hands rank ``rank`` its part (`split_for_ranks`)."""
    return f"train_rank{rank}"


def order_keys(table, seed: int) -> np.ndarray:
    """[N] uint64 sort keys of tokenised rows: BLAKE2b of (seed, row key, query and rationale
    ids, label). Rows with equal keys are equal, so their relative order cannot matter."""
    keys = table.column(ROW_KEY).to_numpy()
    labels = table.column(LABEL).to_numpy()
    queries = table.column(QUERY_IDS).to_pylist()
    rationales = table.column(RATIONALE_IDS).to_pylist()
    out = np.empty(table.num_rows, dtype=np.uint64)
    prefix = int(seed).to_bytes(8, "little", signed=True)
    for i in range(table.num_rows):
        h = hashlib.blake2b(prefix, digest_size=8)
        h.update(int(keys[i]).to_bytes(8, "little"))
        h.update(np.asarray(queries[i], dtype="<i4").tobytes())
        h.update(b"\x1f")
        h.update(np.asarray(rationales[i], dtype="<i4").tobytes())
        h.update(int(labels[i]).to_bytes(8, "little", signed=True))
        out[i] = int.from_bytes(h.digest(), "little")
    return out


def _add_order_key(table, seed: int):
    import pyarrow as pa

    return table.append_column(ORDER_KEY, pa.array(order_keys(table, seed), type=pa.uint64()))


ROWS_PER_SORT_PART = 50_000


def split_for_ranks(ds, *, seed: int, world_size: int, rows: int | None = None) -> list:
    """Order the tokenised rows by a seeded key and cut them into equal parts, one per rank.

    Args:
        ds: output of `tokenize_dataset`.
        seed: the run's seed (the order changes with it, and with nothing else).
        world_size: number of ranks.
        rows: about how many rows ``ds`` has (sets the sort's range partitions, one per
            `ROWS_PER_SORT_PART` rows); None: one partition per rank.

    Returns:
        ``world_size`` materialised Datasets of ``floor(rows / world_size)`` rows each (the
        last ``rows % world_size`` rows of the order are left out, as ``equal`` splits do).

    Runs the Dataset (read, tokenise, sort) once. The keys are uniform 64-bit hashes, so the
    sort's range boundaries are fixed, evenly spaced values: no sampling pass, and not Ray's
    default of 200 partitions (200 reduce tasks for a few hundred rows on a laptop).
    """
    parts = max(world_size, -(-(rows or 0) // ROWS_PER_SORT_PART))
    boundaries = [(2**64 * k) // parts for k in range(1, parts)]
    ordered = (ds.map_batches(_add_order_key, batch_format="pyarrow", fn_kwargs={"seed": seed})
               .sort(ORDER_KEY, boundaries=boundaries or None).drop_columns([ORDER_KEY]))
    # the sorted blocks in key order: without this, Ray emits its reduce tasks' blocks in the
    # order they finish, and the split below would cut another order each run
    ordered.context.execution_options.preserve_order = True
    return ordered.materialize().split(world_size, equal=True)


def check_policy_ids(ds, descriptions: Mapping[str, str]) -> list[str]:
    """Fail fast, in the driver, on policy ids without a description (runs the Dataset).

    `tokenize_dataset` raises the same error inside a Ray task (wrapped in Ray's
    ``RayTaskError``); calling this first on the `read_gip_dataset` result (Parquet reads
    only the ``policy_id`` column) gives a plain `GIPDataError` before training starts.

    Returns:
        The policy ids present, sorted.

    Raises:
        GIPDataError: naming the unknown ids and the known ones.
    """
    present = sorted(str(p) for p in ds.select_columns([S.POLICY_ID]).unique(S.POLICY_ID))
    unknown = [p for p in present if p not in descriptions]
    if unknown:
        raise GIPDataError(f"unknown policy_id(s) {unknown}; known policies: "
                           f"{sorted(descriptions)}")
    return present


def count_rows(ds) -> int:
    """Rows of a Dataset (runs it up to the count).

    Call it on the `read_gip_dataset` result, not on the tokenised one: tokenisation keeps
    one output row per input row, and counting before it reads only the GIP columns.
    """
    return int(ds.count())


def steps_per_epoch(num_rows: int, world_size: int, batch_size: int) -> int:
    """Steps every rank runs per epoch: ``floor(floor(num_rows / world_size) / batch_size)``.

    ``streaming_split(world_size, equal=True)`` gives each rank ``floor(num_rows /
    world_size)`` rows and batches drop the last incomplete one, so every rank can run
    exactly this many steps.

    Raises:
        GIPDataError: bad arguments, or zero steps (naming rows, world size and batch size).
    """
    for name, value, low in (("num_rows", num_rows, 0), ("world_size", world_size, 1),
                             ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise GIPDataError(f"{name} must be an int >= {low}, got {value!r}")
    steps = (int(num_rows) // int(world_size)) // int(batch_size)
    if steps == 0:
        raise GIPDataError(
            f"no training step: {num_rows} row(s) over world size {world_size} is "
            f"{num_rows // world_size} row(s) per rank, fewer than batch size {batch_size}; "
            "add data, or lower the batch size or the number of workers")
    return steps


def _row_batches(shard, batch_size: int, window: int | None, seed: int, epoch: int,
                 prefetch_batches: int) -> Iterator[dict[str, Any]]:
    """Full ``batch_size``-row numpy batches of ``shard`` in a deterministic order: as stored,
    or shuffled ``window`` rows at a time with a generator seeded by (seed, epoch, window
    index). Ray's rebatching makes every window the same rows whatever the block sizes, so
    the order does not depend on how Ray cut the data into blocks (Ray's own local shuffle
    buffer does)."""
    if not window:
        yield from shard.iter_batches(batch_size=batch_size, batch_format="numpy",
                                      drop_last=True, prefetch_batches=prefetch_batches)
        return
    window = max(window, batch_size)
    pending: dict[str, np.ndarray] | None = None
    windows = iter(shard.iter_batches(batch_size=window, batch_format="numpy", drop_last=False,
                                      prefetch_batches=prefetch_batches))
    try:
        for w, chunk in enumerate(windows):
            n = len(next(iter(chunk.values())))
            order = np.random.default_rng([int(seed) % 2**63, epoch, w]).permutation(n)
            chunk = {k: np.asarray(v)[order] for k, v in chunk.items()}
            if pending is not None:
                chunk = {k: np.concatenate([pending[k], chunk[k]]) for k in chunk}
            total = len(next(iter(chunk.values())))
            full = total - total % batch_size
            for start in range(0, full, batch_size):
                yield {k: v[start:start + batch_size] for k, v in chunk.items()}
            pending = {k: v[full:] for k, v in chunk.items()} if full < total else None
    finally:
        _close(windows)  # stop Ray's executor now, not when this generator is freed


def iter_gip_batches(shard, info: TokenizerInfo, params: GIPDataParams, *, epoch: int,
                     steps: int, skip: int = 0, local_shuffle_buffer_size: int | None = None,
                     prefetch_batches: int = 1) -> Iterator[dict[str, Any]]:
    """Exactly ``steps - skip`` collated batches of one epoch from a rank's part.

    The batches are a function of the part's rows, the seed and the epoch only (see
    `_row_batches`), so a resumed epoch yields the batches an uninterrupted one yields.

    Args:
        shard: ``ray.train.get_dataset_shard(rank_dataset_name(rank))`` (a ``DataIterator``)
            or a Dataset.
        info: `TokenizerInfo` of the tokenizer used by `tokenize_dataset`.
        params: `GIPDataParams` (``batch_size`` rows per batch, plus the collate settings).
        epoch: the epoch (fixes rationale dropout and MLM draws, with the seed and row keys).
        steps: batches of a full epoch (`steps_per_epoch`); the iterator stops there even if
            the shard has more.
        skip: batches already done this epoch (resume): read but not collated nor yielded.
        local_shuffle_buffer_size: rows shuffled together, with a generator seeded by
            ``(seed, epoch, window)`` (None: the part's own order, the same every epoch).
        prefetch_batches: batches Ray prepares ahead.

    Yields:
        `collate_batch` dictionaries (``input_ids``, ``attention_mask``, ``labels``,
        ``mlm_input_ids``, ``mlm_labels``, ``has_rationale``).

    Raises:
        GIPDataError: bad steps/skip, or the shard ran out before ``steps`` batches (ranks
            would then disagree on the step count).
    """
    if steps < 1 or not 0 <= skip <= steps:
        raise GIPDataError(f"need steps >= 1 and 0 <= skip <= steps, got steps={steps} "
                           f"skip={skip}")
    batches = _row_batches(shard, params.batch_size, local_shuffle_buffer_size, params.seed,
                           epoch, prefetch_batches)
    done = 0
    iterator = iter(batches)
    try:
        while done < steps:
            batch = next(iterator, None)
            if batch is None:
                raise GIPDataError(
                    f"epoch {epoch}: the data shard ran out after {done} full batch(es) of "
                    f"{params.batch_size} row(s); expected {steps} (steps_per_epoch). Every "
                    "rank must run the same number of steps: count the rows of the same "
                    "Dataset the trainer splits, with the same world size")
            out = collate_batch(batch, info, params, epoch=epoch) if done >= skip else None
            done += 1
            if done == steps:  # release Ray's iterator now, not when this generator is freed
                _close(iterator)
            if out is not None:
                yield out
    finally:
        _close(iterator)
    log.debug("epoch %d: %d batch(es), %d skipped", epoch, steps - skip, skip)


def _close(iterator) -> None:
    """Stop Ray's streaming executor behind an iterator that is left before its end."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def mask_fraction(batch: Mapping[str, Any]) -> float:
    """Share of real tokens selected for MLM in a collated batch (for logs and tests)."""
    real = int(batch["attention_mask"].sum())
    return float((batch["mlm_labels"] != IGNORE_INDEX).sum()) / max(real, 1)

