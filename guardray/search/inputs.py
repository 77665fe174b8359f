"""Everything the merge search needs before its first trial, built in the driver: the pool,
the search space, the weights and the tokenised validation rows (`prepare`)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from guardray.search.objective import Rows, encode, instruction_options, load_rows, model_inputs
from guardray.search.pool import Pool, build_pool
from guardray.search.space import SearchSpace
from guardray.search.trainable import ValidationPayload
from guardray.search.weights import WeightsPayload, load_weights

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Prepared:
    """The search's inputs.

    Attributes:
        pool: the ranked candidates.
        policies: loaded policies by id.
        options: instruction options (``[{"name", "texts"}]``; one ``text`` option for
            plain-text models).
        space: the search space Ω.
        rows: the validation rows.
        validation: their token ids per option, labels, policies.
        weights: the pool's weights.
        tokenizer: the best candidate's tokenizer.
    """

    pool: Pool
    policies: dict[str, Any]
    options: list[dict[str, Any]]
    space: SearchSpace
    rows: Rows
    validation: ValidationPayload
    weights: WeightsPayload
    tokenizer: Any

    def fingerprint(self, cfg) -> dict[str, Any]:
        """What a resumed search must share with the saved one."""
        return {"candidates": [[c.name, c.path] for c in self.pool.candidates],
                "base": self.pool.base_ref, "space": self.space.describe(),
                "options": [o["name"] for o in self.options], "data": cfg.data.path,
                "objective": cfg.objective.model_dump(mode="json"),
                "searcher": cfg.search.model_dump(mode="json"),
                "merge_seed": cfg.space.merge_seed}

    def ids_for(self, texts: dict[str, str] | None, rows: Rows | None = None,
                max_length: int = 256) -> list[list[int]]:
        """Token ids of ``rows`` (validation by default) under an instruction dict."""
        if rows is None:
            for i, opt in enumerate(self.options):
                if texts is None or opt["texts"] == texts:
                    return self.validation.ids[i]
            rows = self.rows
        return encode(self.tokenizer, model_inputs(rows, self.pool.input_format, texts),
                      max_length)


def prepare(cfg) -> Prepared:
    """Build the pool, space, weights and validation rows of a `SearchConfig`.

    Raises:
        ConfigError / PoolError / DataError: before any trial starts.
    """
    from transformers import AutoTokenizer

    from guardray.policies import load_policies

    pool = build_pool(cfg.pool.finetune_dirs, cfg.pool.models, cfg.pool.per_group,
                      cfg.pool.top_k)
    policies = {p.id: p for p in load_policies(cfg.policies)}
    ids = pool.policy_ids
    if pool.input_format == "instruction":
        options = instruction_options([c.card for c in pool.candidates], policies, ids,
                                      search=cfg.space.instructions)
    else:
        options = [{"name": "text", "texts": {}}]
    space = SearchSpace([c.f1 for c in pool.candidates], cfg.space.methods,
                        n_instructions=len(options), min_models=cfg.space.min_models,
                        max_models=cfg.space.max_models, ranges=cfg.space.ranges())
    rows = load_rows(cfg, cfg.objective.split, ids, cap=cfg.data.max_rows_per_policy,
                     seed=cfg.search.seed)
    log.info("merge search objective: %d validation rows over policies %s; %d instruction "
             "option(s); %d subsets x %d method(s)", len(rows), ids, len(options),
             len(space.subsets), len(space.methods))
    tokenizer = AutoTokenizer.from_pretrained(pool.candidates[0].path)
    max_len = cfg.objective.max_length
    token_ids = [encode(tokenizer, model_inputs(rows, pool.input_format, o["texts"]), max_len)
                 for o in options]
    validation = ValidationPayload(token_ids, rows.labels, rows.policy_ids,
                                   int(tokenizer.pad_token_id or 0), cfg.objective.batch_size,
                                   cfg.objective.aggregate, cfg.objective.threshold_rule,
                                   cfg.objective.threshold_scope)
    weights = load_weights(pool)
    log.info("merge search weights: %d tensors x %d model(s) + base, %.1f MiB",
             len(weights.names), len(weights.models), weights.nbytes() / 2**20)
    return Prepared(pool, policies, options, space, rows, validation, weights, tokenizer)
