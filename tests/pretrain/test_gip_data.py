"""The GIP data path: collate (dropout, truncation, padding, MLM) and the Ray Data pipeline.

Collate tests tokenise by hand with real tokenizers (a tiny XLM-R one and the embedded
all-MiniLM BERT one) and compare with what the tokenizer itself produces. Ray tests write real
shards and stream them through read -> tokenize -> streaming_split -> iter_gip_batches.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pyarrow as pa
import pytest
import torch

from guardray import schema as S
from guardray.policies.render import format_gip_input
from guardray.pretrain import data as G

DESC = {
    "tax": "The assistant must not give tax advice.",
    "finance": "The assistant must not give personalised financial advice.",
}
ROWS = [  # (policy, text, rationale, label)
    ("tax", "How do I file my taxes if I moved between two states?",
     "The user asks how to file their own return, which is tax advice.", 1),
    ("finance", "Explain how compound interest works in general terms.", "", 0),
    ("finance", "Should I put my savings into bitcoin or an index fund?",
     "A personalised investment recommendation.", 1),
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def xlmr_path(tmp_path_factory):
    from guardray.modeling.tiny import build_tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny-xlmr-tok")
    build_tiny_tokenizer(path)
    return str(path)


@pytest.fixture(scope="module")
def bert_path():
    from guardray.modeling.offline import resolve_model

    return resolve_model("embedded:all-minilm-l6-v2")


@pytest.fixture(scope="module", params=["xlmr", "bert"])
def tok_case(request, xlmr_path, bert_path):
    from transformers import AutoTokenizer

    path = xlmr_path if request.param == "xlmr" else bert_path
    tok = AutoTokenizer.from_pretrained(path)
    return request.param, path, tok, G.TokenizerInfo.from_tokenizer(tok)


def sample_table(rows, ids=None, splits=None) -> pa.Table:
    """Sample-schema table of (policy, text, rationale, label) tuples."""
    cols = {c: [] for c in S.COLUMNS}
    for i, (p, t, r, y) in enumerate(rows):
        cols[S.ID].append(ids[i] if ids else S.sample_id(p, t))
        cols[S.POLICY_ID].append(p)
        cols[S.TEXT].append(t)
        cols[S.RATIONALE].append(r)
        cols[S.LABEL].append(y)
        cols[S.LABEL_INITIAL].append(y)
        cols[S.SOURCE].append("seed")
        cols[S.GENERATOR].append("test")
        cols[S.SPLIT].append(splits[i] if splits else "train")
    return pa.Table.from_pydict(cols, schema=S.arrow_schema())


def tokenized(path, rows, max_length=256, ids=None) -> dict[str, np.ndarray]:
    """Rows through the real tokenising UDF, as the numpy batch Ray would hand over."""
    out = G.GIPTokenizer(path, DESC, max_length)(sample_table(rows, ids))
    return {c: out.column(c).to_numpy(zero_copy_only=False) for c in out.column_names}


def many_rows(n: int):
    words = "tax stocks savings file return advice bitcoin fund income rate".split()
    rng = np.random.default_rng(0)
    return [("tax" if i % 2 else "finance",
             f"question {i}: " + " ".join(rng.choice(words, size=rng.integers(3, 12))),
             "rationale " + " ".join(rng.choice(words, size=rng.integers(1, 8))), i % 2)
            for i in range(n)]


def trim(batch, i):
    """Row i of a collated batch without its padding."""
    n = int(batch["attention_mask"][i].sum())
    return tuple(tuple(batch[k][i, :n].tolist())
                 for k in ("input_ids", "mlm_input_ids", "mlm_labels"))


# --------------------------------------------------------------------------- tokenizer info


def test_tokenizer_info_reads_the_pair_layout(tok_case):
    name, _, tok, info = tok_case
    if name == "xlmr":  # <s> A </s></s> B </s>
        assert (info.pad_id, info.mask_id, info.sep_ids, info.eos_id) == (1, 202, (2,), 2)
    else:  # [CLS] A [SEP] B [SEP]
        assert (info.pad_id, info.mask_id, info.sep_ids, info.eos_id) == (0, 103, (), 102)
    assert info.vocab_size == len(tok)
    assert set(tok.all_special_ids) <= set(info.special_ids)
    assert G.TokenizerInfo.from_tokenizer(tok) == info  # deterministic, hashable, picklable
    import pickle

    assert pickle.loads(pickle.dumps(info)) == info


# --------------------------------------------------------------------------- collate layout


def test_input_ids_equal_the_tokenizer_with_and_without_rationale(tok_case):
    _, path, tok, info = tok_case
    batch = tokenized(path, ROWS)
    kept = G.collate_batch(batch, info, G.GIPDataParams(rationale_dropout=0.0), epoch=0)
    dropped = G.collate_batch(batch, info, G.GIPDataParams(rationale_dropout=1.0), epoch=0)
    for i, (p, t, r, y) in enumerate(ROWS):
        query = format_gip_input(DESC[p], t)
        plain = tok(format_gip_input(DESC[p], t, None))["input_ids"]
        assert trim(dropped, i)[0] == tuple(plain)  # the inference form, exactly
        assert trim(kept, i)[0] == tuple(tok(query, r)["input_ids"] if r else plain)
    assert kept["has_rationale"].tolist() == [True, False, True]  # row 1 has none
    assert dropped["has_rationale"].tolist() == [False, False, False]
    assert kept["labels"].tolist() == [1, 0, 1]
    assert kept["labels"].dtype == torch.int64


def test_truncation_cuts_the_rationale_first_and_keeps_the_final_eos(tok_case):
    _, path, tok, info = tok_case
    p, t, r, _ = ROWS[0]
    query = format_gip_input(DESC[p], t)
    n_query = len(tok(query)["input_ids"])
    n_pair = len(tok(query, r)["input_ids"])
    batch = tokenized(path, ROWS[:1])
    for max_length in (n_pair, n_pair - 3, n_query + len(info.sep_ids) + 2):
        params = G.GIPDataParams(max_length=max_length, rationale_dropout=0.0)
        out = G.collate_batch(batch, info, params, epoch=0)
        expected = tok(query, r, truncation="only_second", max_length=max_length)["input_ids"]
        assert trim(out, 0)[0] == tuple(expected)
        assert out["input_ids"].shape[1] == max_length
        assert out["has_rationale"].tolist() == [True]
    # No room for a single rationale token: the row goes without one.
    out = G.collate_batch(batch, info, G.GIPDataParams(max_length=n_query + len(info.sep_ids) + 1,
                                                       rationale_dropout=0.0), epoch=0)
    assert out["has_rationale"].tolist() == [False]
    assert trim(out, 0)[0] == tuple(tok(query)["input_ids"])
    # A query longer than max_length: first max_length - 1 tokens + eos (as the tokenizer does).
    short = tokenized(path, ROWS[:1], max_length=10)
    out = G.collate_batch(short, info, G.GIPDataParams(max_length=10, rationale_dropout=0.0),
                          epoch=0)
    assert trim(out, 0)[0] == tuple(tok(query, truncation=True, max_length=10)["input_ids"])
    assert out["input_ids"][0, -1].item() == info.eos_id
    assert out["has_rationale"].tolist() == [False]


def test_dynamic_padding_and_attention_mask(tok_case):
    _, path, _, info = tok_case
    batch = tokenized(path, ROWS)
    out = G.collate_batch(batch, info, G.GIPDataParams(rationale_dropout=0.0), epoch=0)
    lengths = [len(trim(out, i)[0]) for i in range(3)]
    assert out["input_ids"].shape == (3, max(lengths))  # padded to the longest row only
    for i, n in enumerate(lengths):
        assert out["attention_mask"][i].tolist() == [1] * n + [0] * (max(lengths) - n)
        assert set(out["input_ids"][i, n:].tolist()) <= {info.pad_id}
        assert set(out["mlm_input_ids"][i, n:].tolist()) <= {info.pad_id}
        assert set(out["mlm_labels"][i, n:].tolist()) <= {-100}
    assert sorted(out) == sorted(G.BATCH_KEYS)
    for key in ("input_ids", "attention_mask", "mlm_input_ids", "mlm_labels"):
        assert out[key].dtype == torch.int64
    assert out["has_rationale"].dtype == torch.bool


# --------------------------------------------------------------------------- randomness


def test_row_key_is_a_stable_hash_of_the_id():
    ident = "0123abcd"
    expected = int.from_bytes(hashlib.blake2b(ident.encode(), digest_size=8).digest(), "little")
    assert G.row_key(ident) == expected
    assert G.row_keys([ident, "x"]).tolist() == [expected, G.row_key("x")]
    assert G.row_keys([ident]).dtype == np.uint64


def test_rationale_dropout_is_per_row_deterministic_and_changes_with_epoch(xlmr_path):
    from transformers import AutoTokenizer

    info = G.TokenizerInfo.from_tokenizer(AutoTokenizer.from_pretrained(xlmr_path))
    batch = tokenized(xlmr_path, many_rows(4000))
    params = G.GIPDataParams(rationale_dropout=0.3, seed=7)
    kept = [G.collate_batch(batch, info, params, epoch=e)["has_rationale"].numpy()
            for e in (0, 1)]
    again = G.collate_batch(batch, info, params, epoch=0)["has_rationale"].numpy()
    assert (kept[0] == again).all()  # same (seed, epoch, row_key): same decision
    assert (kept[0] != kept[1]).mean() > 0.3  # new draw every epoch (expected 0.42)
    assert abs(kept[0].mean() - 0.7) < 0.03  # P(keep) = 1 - dropout; sd ~ 0.007
    other_seed = G.collate_batch(batch, info, G.GIPDataParams(rationale_dropout=0.3, seed=8),
                                 epoch=0)["has_rationale"].numpy()
    assert (kept[0] != other_seed).mean() > 0.3


def test_same_row_same_tensors_whatever_the_batch(tok_case):
    _, path, _, info = tok_case
    rows = many_rows(6)
    full = tokenized(path, rows)
    params = G.GIPDataParams(rationale_dropout=0.5, mlm_probability=0.3, seed=3)
    whole = G.collate_batch(full, info, params, epoch=2)
    order = [4, 1, 5]
    part = G.collate_batch({k: v[order] for k, v in full.items()}, info, params, epoch=2)
    for j, i in enumerate(order):
        assert trim(part, j) == trim(whole, i)
        assert part["has_rationale"][j] == whole["has_rationale"][i]
    single = G.collate_batch({k: v[[5]] for k, v in full.items()}, info, params, epoch=2)
    assert trim(single, 0) == trim(whole, 5)


def test_collate_accepts_a_rectangular_ids_column(xlmr_path):
    """Ray hands equal-length lists over as a 2-D array, ragged ones as an object array."""
    from transformers import AutoTokenizer

    info = G.TokenizerInfo.from_tokenizer(AutoTokenizer.from_pretrained(xlmr_path))
    batch = tokenized(xlmr_path, [ROWS[0], ROWS[0]], ids=["a", "b"])
    rect = dict(batch, query_ids=np.stack(list(batch["query_ids"])),
                rationale_ids=np.stack(list(batch["rationale_ids"])))
    params = G.GIPDataParams(rationale_dropout=0.5)
    a, b = (G.collate_batch(x, info, params, epoch=0) for x in (batch, rect))
    for key in G.BATCH_KEYS:
        assert torch.equal(a[key], b[key])


# --------------------------------------------------------------------------- MLM


def test_mlm_masks_only_real_tokens_at_the_expected_rates(tok_case):
    _, path, _, info = tok_case
    batch = tokenized(path, many_rows(3000))
    params = G.GIPDataParams(mlm_probability=0.15, rationale_dropout=0.5)
    out = G.collate_batch(batch, info, params, epoch=0)
    ids, mlm_ids, labels = out["input_ids"], out["mlm_input_ids"], out["mlm_labels"]
    special = torch.isin(ids, torch.tensor(info.special_ids))
    selected = labels != -100
    assert not (selected & special).any()  # never cls/sep/eos/pad
    assert not (selected & (out["attention_mask"] == 0)).any()
    assert torch.equal(labels[selected], ids[selected])  # original id where selected
    assert torch.equal(mlm_ids[~selected], ids[~selected])  # untouched elsewhere
    candidates = (~special).sum().item()
    assert candidates > 20000
    assert abs(selected.sum().item() / candidates - 0.15) < 0.01
    as_mask = (mlm_ids[selected] == info.mask_id).float().mean().item()
    unchanged = (mlm_ids[selected] == ids[selected]).float().mean().item()
    replaced = 1 - as_mask - unchanged
    assert abs(as_mask - 0.8) < 0.03
    # A random replacement can draw the original id (1 / non-special vocab of it):
    assert abs(unchanged - 0.1) < 0.02 and abs(replaced - 0.1) < 0.02
    random_ids = mlm_ids[selected & (mlm_ids != info.mask_id) & (mlm_ids != ids)]
    assert not torch.isin(random_ids, torch.tensor(info.special_ids)).any()
    assert random_ids.max().item() < info.vocab_size
    # Another epoch masks other positions (all rationales kept: the same token layout).
    fixed = G.GIPDataParams(mlm_probability=0.15, rationale_dropout=0.0)
    epochs = [G.collate_batch(batch, info, fixed, epoch=e) for e in (0, 1)]
    assert torch.equal(epochs[0]["input_ids"], epochs[1]["input_ids"])
    sel = [(b["mlm_labels"] != -100) for b in epochs]
    overlap = (sel[0] & sel[1]).sum().item() / sel[0].sum().item()
    assert overlap < 0.25  # independent draws: ~0.15 of one epoch's picks recur
    assert abs(G.mask_fraction(out) - selected.sum().item() / out["attention_mask"].sum().item()) \
        < 1e-9


def test_mlm_probability_zero_selects_nothing(xlmr_path):
    from transformers import AutoTokenizer

    info = G.TokenizerInfo.from_tokenizer(AutoTokenizer.from_pretrained(xlmr_path))
    out = G.collate_batch(tokenized(xlmr_path, ROWS), info,
                          G.GIPDataParams(mlm_probability=0.0), epoch=0)
    assert (out["mlm_labels"] == -100).all()
    assert torch.equal(out["mlm_input_ids"], out["input_ids"])


# --------------------------------------------------------------------------- errors, steps


def test_collate_and_tokenizer_errors(xlmr_path):
    from transformers import AutoTokenizer

    info = G.TokenizerInfo.from_tokenizer(AutoTokenizer.from_pretrained(xlmr_path))
    batch = tokenized(xlmr_path, ROWS)
    with pytest.raises(G.GIPDataError, match=r"labels must be 0 or 1, got \[0, 1, 2\]"):
        G.collate_batch(dict(batch, label=np.array([0, 1, 2])), info, G.GIPDataParams(),
                        epoch=0)
    with pytest.raises(G.GIPDataError, match="row_key"):
        G.collate_batch({k: v for k, v in batch.items() if k != "row_key"}, info,
                        G.GIPDataParams(), epoch=0)
    udf = G.GIPTokenizer(xlmr_path, {"tax": "d"}, 64)
    with pytest.raises(G.GIPDataError, match=r"unknown policy_id\(s\) \['finance'\]; known "
                                             r"policies: \['tax'\]"):
        udf(sample_table(ROWS))
    bad = sample_table(ROWS[:1]).set_column(4, S.LABEL, pa.array([3], pa.int8()))
    with pytest.raises(G.GIPDataError, match=r"got \[3\]"):
        udf(bad)


@pytest.mark.parametrize("kwargs, match", [
    ({"max_length": 2}, "max_length"), ({"batch_size": 0}, "batch_size"),
    ({"mlm_probability": 1.0}, "mlm_probability"), ({"rationale_dropout": -0.1}, "rationale"),
    ({"seed": -1}, "seed"), ({"splits": ("train", "dev")}, r"subset of \['train', "),
    ({"splits": ()}, "non-empty"),
])
def test_params_are_validated(kwargs, match):
    with pytest.raises(G.GIPDataError, match=match):
        G.GIPDataParams(**kwargs)


def test_steps_per_epoch():
    assert G.steps_per_epoch(100, 2, 16) == 3  # 50 rows per rank -> 3 full batches
    assert G.steps_per_epoch(1_000_000, 3, 16) == 20833  # 333333 // 16
    assert G.steps_per_epoch(32, 2, 16) == 1
    with pytest.raises(G.GIPDataError, match=r"31 row\(s\) over world size 2 is 15 row\(s\) "
                                             r"per rank, fewer than batch size 16"):
        G.steps_per_epoch(31, 2, 16)
    with pytest.raises(G.GIPDataError, match="world_size"):
        G.steps_per_epoch(10, 0, 1)


# --------------------------------------------------------------------------- Ray Data


N_PER_SHARD = 40
SPLIT_CYCLE = ("train", "train", "train", "validation", "test")
SHARD_SPLITS: dict[str, str] = {}  # id -> split of the rows `shard_dir` writes


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    from guardray.io.shards import write_shard

    out = tmp_path_factory.mktemp("gip-shards")
    for k in range(3):
        rows = [(p, f"shard {k} {t}", r, y) for p, t, r, y in many_rows(N_PER_SHARD)]
        splits = [SPLIT_CYCLE[i % len(SPLIT_CYCLE)] for i in range(N_PER_SHARD)]
        SHARD_SPLITS.update({S.sample_id(r[0], r[1]): s for r, s in zip(rows, splits)})
        write_shard(sample_table(rows, splits=splits), out, index=k)
    return str(out)


def test_ray_pipeline_gives_every_rank_the_same_steps(ray_session, shard_dir, xlmr_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(xlmr_path)
    info = G.TokenizerInfo.from_tokenizer(tok)
    params = G.GIPDataParams(max_length=64, batch_size=7, rationale_dropout=0.5)
    ds = G.read_gip_dataset(shard_dir)
    assert ds.columns() == list(G.READ_COLUMNS)
    num_rows = G.count_rows(ds)
    assert num_rows == 3 * 24  # 3 of every 5 rows are train
    steps = G.steps_per_epoch(num_rows, 2, params.batch_size)  # 36 per rank -> 5
    assert steps == 5
    splits = G.tokenize_dataset(ds, xlmr_path, DESC, params).streaming_split(2, equal=True)
    got: dict[tuple[int, int], list] = {}
    errors: list[BaseException] = []

    def consume(rank: int) -> None:
        try:
            for epoch in (0, 1):
                got[rank, epoch] = list(G.iter_gip_batches(splits[rank], info, params,
                                                           epoch=epoch, steps=steps))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    assert {k: len(v) for k, v in got.items()} == {(r, e): 5 for r in (0, 1) for e in (0, 1)}
    for batches in got.values():
        assert all(b["input_ids"].shape[0] == 7 for b in batches)
        assert all(b["input_ids"].shape[1] <= 64 for b in batches)
    # The rows really are the tokenised ones: ids start with <s> and the query ends with </s>.
    first = got[0, 0][0]
    assert (first["input_ids"][:, 0] == tok.cls_token_id).all()


def test_ray_split_filter_and_tokenised_columns(ray_session, shard_dir, xlmr_path):
    from transformers import AutoTokenizer

    both = G.read_gip_dataset(shard_dir, splits=("validation", "test"))
    assert G.check_policy_ids(both, DESC) == ["finance", "tax"]
    with pytest.raises(G.GIPDataError, match="dev"):
        G.read_gip_dataset(shard_dir, splits=("dev",))
    params = G.GIPDataParams(max_length=64)
    rows = G.tokenize_dataset(both, xlmr_path, DESC, params).take_all()
    source = {r[S.ID]: r for r in both.take_all()}
    assert set(source) == {i for i, split in SHARD_SPLITS.items() if split != "train"}
    tok = AutoTokenizer.from_pretrained(xlmr_path)
    by_key = {G.row_key(i): r for i, r in source.items()}
    assert len(rows) == 48 and set(by_key) == {r["row_key"] for r in rows}
    for row in rows[:5]:
        src = by_key[row["row_key"]]
        assert list(row["query_ids"]) == tok(
            format_gip_input(DESC[src[S.POLICY_ID]], src[S.TEXT]), truncation=True,
            max_length=64)["input_ids"]
        assert list(row["rationale_ids"]) == tok(src[S.RATIONALE],
                                                 add_special_tokens=False)["input_ids"]
        assert row["label"] == src[S.LABEL]


def test_ray_read_blocks_follow_block_bytes(ray_session, shard_dir):
    """Ray 2.60 packs Parquet row groups into 128 MiB read units unless told otherwise."""
    import os

    from guardray.io.ray_data import BIN_PACKING_ENV

    default = G.read_gip_dataset(shard_dir).materialize()
    assert default.num_blocks() == 1  # three tiny shards, one read unit of 8 MiB
    small = G.read_gip_dataset(shard_dir, block_bytes=1).materialize()
    assert small.num_blocks() == 3  # one shard (one row group) per block
    assert small.count() == default.count() == 72
    assert BIN_PACKING_ENV not in os.environ  # only set while the read is planned
    with pytest.raises(G.GIPDataError, match="block_bytes must be an int >= 1, got 0"):
        G.read_gip_dataset(shard_dir, block_bytes=0)


def test_ray_errors_unknown_policy_and_short_shard(ray_session, shard_dir, xlmr_path):
    from transformers import AutoTokenizer

    info = G.TokenizerInfo.from_tokenizer(AutoTokenizer.from_pretrained(xlmr_path))
    params = G.GIPDataParams(max_length=32, batch_size=8)
    ds = G.read_gip_dataset(shard_dir)
    with pytest.raises(G.GIPDataError, match=r"unknown policy_id\(s\) \['finance'\]"):
        G.check_policy_ids(ds, {"tax": "d"})
    with pytest.raises(Exception, match=r"unknown policy_id\(s\) \['finance'\]"):
        G.tokenize_dataset(ds, xlmr_path, {"tax": "d"}, params).take_all()
    # 72 rows -> 9 full batches; asking for 10 must fail, not silently run short.
    tds = G.tokenize_dataset(ds, xlmr_path, DESC, params).materialize()
    with pytest.raises(G.GIPDataError, match="ran out after 9 full batch"):
        list(G.iter_gip_batches(tds, info, params, epoch=0, steps=10))
    # Stops at `steps` even with rows left, and `skip` leaves out the first batches.
    assert len(list(G.iter_gip_batches(tds, info, params, epoch=0, steps=4))) == 4
    assert len(list(G.iter_gip_batches(tds, info, params, epoch=0, steps=9, skip=6,
                                       local_shuffle_buffer_size=16))) == 3


def test_skip_resumes_with_the_same_batches(ray_session, xlmr_path):
    """Resume: skipping k batches yields what a full run yields from batch k on."""
    import ray
    from transformers import AutoTokenizer

    info = G.TokenizerInfo.from_tokenizer(AutoTokenizer.from_pretrained(xlmr_path))
    table = G.GIPTokenizer(xlmr_path, DESC, 64)(sample_table(many_rows(40)))
    ds = ray.data.from_arrow(table)  # one block: a fixed order
    params = G.GIPDataParams(max_length=64, batch_size=8)
    full = list(G.iter_gip_batches(ds, info, params, epoch=3, steps=5))
    resumed = list(G.iter_gip_batches(ds, info, params, epoch=3, steps=5, skip=2))
    assert len(resumed) == 3
    for a, b in zip(full[2:], resumed):
        for key in G.BATCH_KEYS:
            assert torch.equal(a[key], b[key])
    with pytest.raises(G.GIPDataError, match="skip"):
        next(G.iter_gip_batches(ds, info, params, epoch=0, steps=2, skip=3))


@pytest.mark.slow
def test_rank_parts_and_order_do_not_depend_on_ray_scheduling(ray_session, shard_dir,
                                                               xlmr_path):
    """Issue 15, item 4: the rows of each rank and their order are a function of the seed and
    the epoch only: other block sizes and another number of tokenizer actors (which change
    the order Ray Data produces blocks in) give the same batches; another epoch reorders."""
    params = G.GIPDataParams(max_length=64, batch_size=7, seed=3)

    def parts(block_bytes: int, actors: int) -> list:
        ds = G.read_gip_dataset(shard_dir, block_bytes=block_bytes)
        tds = G.tokenize_dataset(ds, xlmr_path, DESC, params, num_actors=actors, batch_size=5)
        return G.split_for_ranks(tds, seed=params.seed, world_size=2, rows=72)

    def batches(split: list, epoch: int = 1) -> list[list[list[int]]]:
        return [[b[G.ROW_KEY].tolist() for b in G._row_batches(part, 7, 16, params.seed, epoch,
                                                                1)] for part in split]

    split = parts(G.BLOCK_BYTES, 1)
    assert [p.count() for p in split] == [36, 36]
    first = batches(split)
    assert batches(parts(1, 2)) == first  # 3 blocks, 2 actors: another production order
    def rows(part: list[list[int]]) -> set[int]:
        return {k for batch in part for k in batch}

    assert sum(len(rows(p)) for p in first) == 2 * 5 * 7  # 5 full batches per rank, no repeat
    assert not rows(first[0]) & rows(first[1])  # disjoint parts
    other_epoch = batches(split, epoch=2)
    assert other_epoch != first
    # each rank keeps its part (35 of its 36 rows per epoch: which one is left over varies)
    assert not rows(other_epoch[0]) & rows(first[1])
    assert len(rows(other_epoch[0]) & rows(first[0])) >= 34
