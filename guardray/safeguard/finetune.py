"""The LoRA fine-tunes of the safeguard job: one Ray Tune trial per seed (paper C.2).

Each trial is a function trainable with fractional resources; the training pairs travel
through the object store (``tune.with_parameters``); every 10 steps the loss is reported to
Tune (so its dashboard and TensorBoard show the curves); the trial writes
``{output_dir}/finetune/seed{S}/adapter`` and ``.../merged`` (`guardray.safeguard.sft`).
Nothing here calls ``ray.init``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from guardray.errors import RunError

log = logging.getLogger(__name__)


class SafeguardFinetuneError(RunError):
    """A fine-tuning trial failed."""


def finetune_dir(output_dir: str | Path, seed: int) -> Path:
    """Where the fine-tune of ``seed`` goes."""
    return Path(output_dir) / "finetune" / f"seed{seed}"


def run_lora_finetunes(cfg, base: str, pairs: list[tuple[str, str]],
                       seeds: list[int] | None = None) -> list[dict[str, Any]]:
    """Fine-tune ``base`` once per seed as parallel Ray Tune trials.

    Args:
        cfg: the `SafeguardConfig` (Ray must be running).
        base: the resolved base folder (on a filesystem every node shares).
        pairs: training ``(instruction, response)`` pairs.
        seeds: the seeds to train (default ``cfg.finetune.seeds``).

    Returns:
        One record per seed (`guardray.safeguard.sft.train_lora`'s), sorted by seed.

    Raises:
        SafeguardFinetuneError: a trial failed (naming the seed and the error).
    """
    from ray import tune

    ft = cfg.finetune
    seeds = list(ft.seeds if seeds is None else seeds)
    trainable = tune.with_parameters(_trial, pairs=pairs, base=base,
                                     cfg_data=cfg.model_dump(mode="json"))
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": ft.cpus_per_trial, "gpu": ft.gpus_per_trial}),
        param_space={"seed": tune.grid_search(seeds)},
        tune_config=tune.TuneConfig(max_concurrent_trials=ft.max_concurrent,
                                    trial_dirname_creator=lambda t: f"seed{t.config['seed']}"),
        run_config=tune.RunConfig(
            name=f"safeguard-finetune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=os.path.abspath(os.path.join(cfg.output_dir, "_tune")), verbose=0,
            failure_config=tune.FailureConfig(max_failures=0)),
    )
    log.info("LoRA fine-tuning %s on %d pairs, seeds %s (%d steps each)", base, len(pairs),
             seeds, ft.steps)
    records, errors = [], []
    for result in tuner.fit():
        seed = (result.config or {}).get("seed")
        metrics = result.metrics or {}
        if result.error is not None or not metrics.get("done"):
            errors.append(f"seed {seed}: {result.error or 'trial did not finish'}")
            continue
        records.append({k: metrics[k] for k in _KEYS if k in metrics})
    if errors:
        raise SafeguardFinetuneError("LoRA fine-tuning failed:\n" + "\n".join(errors))
    return sorted(records, key=lambda r: r["seed"])


_KEYS = ("seed", "steps", "loss_first", "loss_last", "seconds", "adapter", "merged")


def _trial(config: dict, *, pairs, base: str, cfg_data: dict) -> None:
    import torch
    from ray import tune

    from guardray.logging_setup import setup_logging
    from guardray.safeguard.config import SafeguardConfig
    from guardray.safeguard.sft import train_lora

    setup_logging()
    cfg = SafeguardConfig.model_validate(cfg_data)
    ft = cfg.finetune
    torch.set_num_threads(ft.torch_threads or max(1, math.ceil(ft.cpus_per_trial)))
    seed = int(config["seed"])

    def report(record: dict) -> None:
        tune.report(dict(record))

    final = train_lora(base, pairs, finetune_dir(cfg.output_dir, seed), settings=ft, seed=seed,
                       system_prompt=cfg.downstream.system_prompt, on_step=report,
                       trust_remote_code=cfg.trust_remote_code)
    tune.report({**final, "done": True})
