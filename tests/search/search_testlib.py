"""Real tiny candidate pools for the merge-search tests: tiny XLM-R TaskGuards (and a
MultiTaskGuard) fine-tuned in seconds on separable sample rows, with `finetune_one`."""

from __future__ import annotations

from pathlib import Path

from sample_testlib import write_sample_shards

REPO = Path(__file__).resolve().parents[2]
DEBUG_FINETUNE = REPO / "configs" / "debug" / "finetune.yaml"
DEBUG_SEARCH = REPO / "configs" / "debug" / "search.yaml"


def finetune(data: Path, out: Path, *overrides: str, seeds=(0,)) -> list[Path]:
    """Fine-tune every group of the debug finetune config (no Ray); returns the folders."""
    from guardray.config import load_config
    from guardray.finetune import FinetuneConfig, finetune_one
    from guardray.finetune.data import build_groups, load_frames
    from guardray.modeling.base import resolve_base
    from guardray.policies import load_policies

    cfg = load_config(FinetuneConfig, DEBUG_FINETUNE,
                      [f"data.path={data}", f"output_dir={out}", "train.epochs=3", *overrides])
    policies = {p.id: p for p in load_policies(cfg.policies)}
    base = resolve_base(cfg.model.base)
    folders = []
    for group in build_groups(cfg, *load_frames(cfg), policies):
        for seed in seeds:
            folders.append(Path(finetune_one(cfg, base, group, seed, policies)["checkpoint"]))
    return folders


def text_pool(root: Path) -> dict[str, Path]:
    """Two policies x two seeds of PolicyGuard-style (text input) TaskGuards."""
    data = write_sample_shards(root / "data")
    finetune(data, root / "ft", seeds=(0, 1))
    return {"data": data, "ft": root / "ft"}


def instruction_pool(root: Path) -> dict[str, Path]:
    """GuardFormer-style (instruction input) TaskGuards per policy plus a MultiTaskGuard."""
    data = write_sample_shards(root / "data")
    fast = ("method=guardformer", "tuning=full", "train.epochs=1", "data.max_train_rows=32",
            "model.max_length=64")
    finetune(data, root / "ft", *fast)
    finetune(data, root / "ft_multi", *fast, "scope=multi_policy")
    return {"data": data, "ft": root / "ft", "ft_multi": root / "ft_multi"}


def search_config(pool: dict[str, Path], out: Path, *overrides: str):
    from guardray.config import load_config
    from guardray.search import SearchConfig

    dirs = ",".join(str(pool[k]) for k in ("ft", "ft_multi") if k in pool)
    return load_config(SearchConfig, DEBUG_SEARCH, [
        f"pool.finetune_dirs=[{dirs}]", f"data.path={pool['data']}", f"output_dir={out}",
        *overrides])


def read_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))
