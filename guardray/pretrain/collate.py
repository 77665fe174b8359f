"""GIP batches from tokenised rows: rationale dropout, MLM masking, dynamic padding (no Ray).

GuardFormer 3.3 trains on ``x̄_i = P_desc \\nQuery: x_i [SEP] r_i`` with
``L = L_MLM + alpha L_ALICE++ + L_CE`` (eq. 1). There is no rationale at inference, so a
rationale is dropped for a row with probability ``rationale_dropout`` each epoch.

Token layout (the tokenizer's own *pair* encoding, see `TokenizerInfo.from_tokenizer`):

- no rationale: ``query_ids`` = ``tokenizer(format_gip_input(desc, text))``, e.g.
  ``<s> desc \\nQuery: text </s>`` (XLM-R) or ``[CLS] ... [SEP]`` (BERT); exactly what the model
  sees at inference;
- rationale kept: ``query_ids + sep_ids + rationale_ids + [eos_id]``, i.e.
  ``tokenizer(query, rationale)["input_ids"]``: ``<s> A </s></s> R </s>`` for XLM-R/RoBERTa
  (``sep_ids = [</s>]``), ``[CLS] A [SEP] R [SEP]`` for BERT (``sep_ids = []``). Segment
  (token type) ids are not produced: every token gets type 0 (XLM-R has one type only).
- truncation to ``max_length``: the rationale is cut first (like ``truncation="only_second"``);
  if not even one rationale token fits, the row goes without rationale
  (``has_rationale=False``); a query longer than ``max_length`` keeps its first
  ``max_length - 1`` tokens and its final eos.

Randomness: every decision for a row (keep its rationale? which tokens are masked and how?) is
a counter-based hash (SplitMix64) of ``(seed, epoch, row_key, stream, position)`` only, so a
row gets the same tensors whatever batch, order, rank or resume point it comes in, and a
different draw every epoch.

MLM (BERT/RoBERTa recipe): each non-special token is selected with probability
``mlm_probability``; a selected token becomes ``<mask>`` (80%), a random non-special token
(10%) or stays unchanged (10%); ``mlm_labels`` hold the original id at selected positions and
-100 elsewhere (ignored by cross-entropy). Special tokens and padding are never selected.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from guardray import schema as S
from guardray.errors import DataError

IGNORE_INDEX = -100
QUERY_IDS, RATIONALE_IDS, LABEL, ROW_KEY = "query_ids", "rationale_ids", S.LABEL, "row_key"
BATCH_KEYS = ("input_ids", "attention_mask", "labels", "mlm_input_ids", "mlm_labels",
              "has_rationale")

# Hash stream ids: independent draws for the dropout decision and the three MLM choices.
_STREAM_DROPOUT, _STREAM_SELECT, _STREAM_KIND, _STREAM_RANDOM = 1, 2, 3, 4
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class GIPDataError(DataError):
    """The GIP data cannot be built as asked; the message names the value and what is valid."""


@dataclasses.dataclass(frozen=True)
class GIPDataParams:
    """How rows become GIP batches.

    Attributes:
        max_length: tokens per row at most (specials included).
        batch_size: rows per rank per step.
        mlm_probability: share of non-special tokens selected for the MLM loss (80% become
            ``<mask>``, 10% a random token, 10% stay unchanged).
        rationale_dropout: probability that a row's rationale is left out in a given epoch.
        seed: base seed of every per-row decision.
        splits: values of the ``split`` column whose rows are used.
    """

    max_length: int = 256
    batch_size: int = 16
    mlm_probability: float = 0.15
    rationale_dropout: float = 0.5
    seed: int = 0
    splits: tuple[str, ...] = ("train",)

    def __post_init__(self) -> None:
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) \
                or self.max_length < 4:
            raise GIPDataError(f"max_length must be an int >= 4, got {self.max_length!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) \
                or self.batch_size < 1:
            raise GIPDataError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if not 0.0 <= self.mlm_probability < 1.0:
            raise GIPDataError(f"mlm_probability must be in [0, 1), got {self.mlm_probability!r}")
        if not 0.0 <= self.rationale_dropout <= 1.0:
            raise GIPDataError(
                f"rationale_dropout must be in [0, 1], got {self.rationale_dropout!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise GIPDataError(f"seed must be an int >= 0, got {self.seed!r}")
        check_splits(self.splits)


def check_splits(splits: Sequence[str]) -> tuple[str, ...]:
    """The splits as a tuple; raises GIPDataError for an empty or unknown one."""
    if isinstance(splits, str):
        splits = (splits,)
    splits = tuple(splits)
    bad = [s for s in splits if s not in S.SPLITS]
    if not splits or bad:
        raise GIPDataError(f"splits must be a non-empty subset of {list(S.SPLITS)}, got "
                           f"{list(splits)}")
    return splits


@dataclasses.dataclass(frozen=True)
class TokenizerInfo:
    """Picklable facts about a tokenizer that `collate_batch` needs.

    Attributes:
        pad_id: padding id.
        mask_id: ``<mask>`` / ``[MASK]`` id.
        sep_ids: ids between a query's closing special and the rationale in the pair encoding
            (``(</s>,)`` for XLM-R/RoBERTa, ``()`` for BERT).
        eos_id: id closing every sequence (``</s>`` for XLM-R, ``[SEP]`` for BERT), or None if
            the tokenizer adds none.
        vocab_size: ``len(tokenizer)`` (added tokens included).
        special_ids: ids never masked nor drawn as random replacements (pad, cls, sep, unk...).
    """

    pad_id: int
    mask_id: int
    sep_ids: tuple[int, ...]
    eos_id: int | None
    vocab_size: int
    special_ids: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tok) -> TokenizerInfo:
        """Read the facts off a Hugging Face (fast) tokenizer.

        ``sep_ids`` and ``eos_id`` come from the tokenizer's own pair encoding of two probe
        texts, so they match ``tokenizer(query, rationale)`` for any model family.

        Raises:
            GIPDataError: no pad or mask token, or a pair layout this module cannot rebuild.
        """
        name = type(tok).__name__
        if tok.pad_token_id is None or tok.mask_token_id is None:
            raise GIPDataError(f"{name}: GIP needs a pad and a mask token (MLM), got pad="
                               f"{tok.pad_token!r} mask={tok.mask_token!r}")
        a, b = "policy query", "rationale words"
        single = list(tok(a)["input_ids"])
        pair = list(tok(a, b)["input_ids"])
        second = list(tok(b, add_special_tokens=False)["input_ids"])
        rest = pair[len(single):]
        start = _find(rest, second)
        tail = rest[start + len(second):] if start >= 0 else []
        if pair[:len(single)] != single or start < 0 or len(tail) > 1 \
                or (tail and single and single[-1] != tail[0]):
            raise GIPDataError(f"{name}: unsupported pair layout {pair} (single {single}, "
                               f"second {second}); expected query + sep + rationale + eos")
        specials = set(tok.all_special_ids) | {tok.pad_token_id, tok.mask_token_id}
        return cls(pad_id=int(tok.pad_token_id), mask_id=int(tok.mask_token_id),
                   sep_ids=tuple(int(i) for i in rest[:start]),
                   eos_id=int(tail[0]) if tail else None, vocab_size=len(tok),
                   special_ids=tuple(sorted(int(i) for i in specials)))


def _find(seq: list[int], sub: list[int]) -> int:
    for i in range(len(seq) - len(sub) + 1):
        if seq[i:i + len(sub)] == sub:
            return i
    return -1


@functools.lru_cache(maxsize=8)
def _replacement_ids(vocab_size: int, special_ids: tuple[int, ...]) -> np.ndarray:
    """Ids a selected token may be replaced by (the 10% random case): every non-special id."""
    return np.setdiff1d(np.arange(vocab_size, dtype=np.int64), np.asarray(special_ids,
                                                                            dtype=np.int64))


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def row_streams(seed: int, epoch: int, row_keys: np.ndarray) -> np.ndarray:
    """Per-row 64-bit keys from ``(seed, epoch, row_key)``: shape [B] uint64."""
    with np.errstate(over="ignore"):
        base = _mix(np.asarray([seed], np.uint64) + _GOLDEN)
        base = _mix(base ^ (np.asarray([epoch], np.uint64) * _GOLDEN))
        return _mix(base ^ np.asarray(row_keys, np.uint64))


def _draw(keys: np.ndarray, stream: int, positions: np.ndarray | None = None) -> np.ndarray:
    """Hash of (key, stream[, position]) -> uint64; keys [B], positions [T] -> [B, T]."""
    with np.errstate(over="ignore"):
        k = _mix(keys ^ (np.uint64(stream) * _GOLDEN))
        if positions is None:
            return k
        return _mix(k[:, None] ^ _mix(np.asarray(positions, np.uint64) + _GOLDEN)[None, :])


def _uniform(h: np.ndarray) -> np.ndarray:
    """uint64 hashes -> floats in [0, 1) from their top 53 bits."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def keep_rationale(seed: int, epoch: int, row_keys: np.ndarray, dropout: float) -> np.ndarray:
    """Whether each row keeps its rationale this epoch: [B] bool, P(False) = dropout."""
    return _uniform(_draw(row_streams(seed, epoch, row_keys), _STREAM_DROPOUT)) >= dropout


def build_row(query: Sequence[int], rationale: Sequence[int] | None, info: TokenizerInfo,
              max_length: int) -> tuple[list[int], bool]:
    """One row's input ids (layout and truncation in the module docstring).

    Returns:
        ``(ids, has_rationale)``.
    """
    q = [int(i) for i in query]
    if len(q) > max_length:
        q = q[:max_length - 1] + [q[-1]] if info.eos_id is not None and q[-1] == info.eos_id \
            else q[:max_length]
    if rationale is None or len(rationale) == 0:
        return q, False
    room = max_length - len(q) - len(info.sep_ids) - (info.eos_id is not None)
    if room < 1:
        return q, False
    tail = [info.eos_id] if info.eos_id is not None else []
    return q + list(info.sep_ids) + [int(i) for i in rationale[:room]] + tail, True


def mask_tokens(ids: np.ndarray, keys: np.ndarray, info: TokenizerInfo,
                probability: float) -> tuple[np.ndarray, np.ndarray]:
    """MLM corruption of a padded batch.

    Args:
        ids: [B, T] int64 token ids (padded with ``info.pad_id``).
        keys: [B] uint64 row keys from `row_streams`.
        info: the tokenizer facts.
        probability: selection probability of a non-special token.

    Returns:
        ``(mlm_input_ids, mlm_labels)``, both [B, T] int64; labels are -100 where not selected.
    """
    positions = np.arange(ids.shape[1], dtype=np.uint64)
    h_select = _draw(keys, _STREAM_SELECT, positions)
    maskable = ~np.isin(ids, np.asarray(info.special_ids, dtype=np.int64))
    selected = maskable & (_uniform(h_select) < probability)
    kind = _uniform(_draw(keys, _STREAM_KIND, positions))
    replacements = _replacement_ids(info.vocab_size, info.special_ids)
    random_ids = replacements[_draw(keys, _STREAM_RANDOM, positions)
                              % np.uint64(len(replacements))]
    corrupted = ids.copy()
    to_mask = selected & (kind < 0.8)
    to_random = selected & (kind >= 0.8) & (kind < 0.9)
    corrupted[to_mask] = info.mask_id
    corrupted[to_random] = random_ids[to_random]
    labels = np.where(selected, ids, IGNORE_INDEX).astype(np.int64)
    return corrupted, labels


def collate_batch(batch: Mapping[str, np.ndarray], info: TokenizerInfo, params: GIPDataParams,
                  *, epoch: int) -> dict[str, torch.Tensor]:
    """Tokenised rows -> one GIP training batch (GuardFormer 3.3, eq. 1 inputs).

    Args:
        batch: columns of `guardray.pretrain.data.tokenize_dataset`: ``query_ids`` and
            ``rationale_ids`` ([B] sequences of ids: an object array of arrays or a 2-D
            array), ``label`` [B] and ``row_key`` [B] uint64.
        info: `TokenizerInfo` of the tokenizer that made the ids.
        params: `GIPDataParams` (max_length, mlm_probability, rationale_dropout, seed).
        epoch: the epoch; with ``params.seed`` and each row's key it fixes every draw.

    Returns:
        ``input_ids`` [B, T] int64 (padded to the longest row), ``attention_mask`` [B, T]
        int64, ``labels`` [B] int64, ``mlm_input_ids`` [B, T] int64, ``mlm_labels`` [B, T]
        int64 (-100 where not selected), ``has_rationale`` [B] bool.

    Raises:
        GIPDataError: a missing column, an empty batch or labels outside {0, 1}.
    """
    missing = [c for c in (QUERY_IDS, RATIONALE_IDS, LABEL, ROW_KEY) if c not in batch]
    if missing:
        raise GIPDataError(f"batch lacks column(s) {missing}; got {sorted(batch)} (use "
                           "tokenize_dataset output)")
    row_keys = np.asarray(batch[ROW_KEY]).astype(np.uint64)
    n = len(row_keys)
    if n == 0:
        raise GIPDataError("empty batch")
    labels = np.asarray(batch[LABEL]).astype(np.int64)
    if not np.isin(labels, (S.SAFE, S.UNSAFE)).all():
        raise GIPDataError(f"labels must be 0 or 1, got {sorted(set(labels.tolist()))}")
    keep = keep_rationale(params.seed, epoch, row_keys, params.rationale_dropout)
    rows, has = [], np.zeros(n, dtype=bool)
    for i, (q, r) in enumerate(zip(batch[QUERY_IDS], batch[RATIONALE_IDS])):
        ids, has[i] = build_row(q, r if keep[i] else None, info, params.max_length)
        rows.append(ids)
    width = max(len(r) for r in rows)
    input_ids = np.full((n, width), info.pad_id, dtype=np.int64)
    attention = np.zeros((n, width), dtype=np.int64)
    for i, ids in enumerate(rows):
        input_ids[i, :len(ids)] = ids
        attention[i, :len(ids)] = 1
    keys = row_streams(params.seed, epoch, row_keys)
    mlm_ids, mlm_labels = mask_tokens(input_ids, keys, info, params.mlm_probability)
    # Padding is a special id, so never selected; still force it (a pad id reused as a word).
    mlm_labels[attention == 0] = IGNORE_INDEX
    mlm_ids[attention == 0] = info.pad_id
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention),
        "labels": torch.from_numpy(labels),
        "mlm_input_ids": torch.from_numpy(mlm_ids),
        "mlm_labels": torch.from_numpy(mlm_labels),
        "has_rationale": torch.from_numpy(has),
    }
