"""Configuration of the merge-search job (``guardray search`` / ``jobs/search.py``): UniGuard.

The search merges the fine-tuned classifiers of ``pool.finetune_dirs`` (TaskGuards per policy
and seed, and a MultiTaskGuard) with `guardray.merge`, one Ray Tune trial per merge recipe,
and keeps the recipe whose merged model scores best on the validation rows of every policy
(UniGuard appendix A.5). Everything the pipeline sets is a top-level field or
``pool.finetune_dirs`` / ``data.path``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from guardray import schema as S
from guardray.config.base import StageConfig, StrictModel
from guardray.metrics.threshold import Rule as ThresholdRule

SEARCHERS = ("thompson", "egreedy", "random", "optuna", "basic")
OWN_SEARCHERS = ("thompson", "egreedy", "random")


class PoolSection(StrictModel):
    """The candidate models.

    Attributes:
        finetune_dirs: output folders of ``guardray finetune`` (``{dir}/{group}/seed{n}``
            checkpoints with ``guardray_model.json``); a per-policy run and a multi-policy run
            may be listed together.
        models: extra checkpoint folders (guardray classifiers).
        per_group: best seeds kept per model group (a policy's TaskGuard, the MultiTaskGuard),
            by validation F1, before ranking.
        top_k: the k best of those (by validation F1) form the search space (None: all).
    """

    finetune_dirs: list[str] = Field(default_factory=lambda: ["outputs/finetune"])
    models: list[str] = Field(default_factory=list)
    per_group: int = Field(default=1, ge=1)
    top_k: int | None = Field(default=None, ge=1)


class DataSection(StrictModel):
    """The labelled rows: the training data folder the pool was fine-tuned on.

    Only rows whose ``split_column`` equals ``validation_split`` enter the search; rows of
    ``test_split`` are read once, at the end, for the chosen model alone.

    Attributes:
        path: sample shard folder or JSONL / CSV / Parquet file (local or ``s3://``).
        validation_split / test_split: split names.
        text_column, label_column, policy_column, split_column: source columns.
        max_rows_per_policy: cap on validation rows per policy (a seeded sample), for speed.
        test_metrics: compute the chosen model's test metrics at the end.
    """

    path: str
    validation_split: str = "validation"
    test_split: str = "test"
    text_column: str = S.TEXT
    label_column: str = S.LABEL
    policy_column: str = S.POLICY_ID
    split_column: str = S.SPLIT
    max_rows_per_policy: int | None = Field(default=None, ge=2)
    test_metrics: bool = True


class ObjectiveSection(StrictModel):
    """What a trial measures.

    Attributes:
        split: the split the objective reads; validation only (a test split is refused).
        aggregate: maximise the ``mean`` of the per-policy macro-F1, or the ``worst`` policy's.
        threshold_rule: how the decision threshold is chosen on the validation scores
            (``max_f1``, or ``max_f1_1se``: nearest 0.5 within one bootstrap SE of the best)
            or ``fixed`` at 0.5; the chosen model ships with it.
        threshold_scope: ``all``: one threshold for every row (the paper's UniGuard);
            ``policy``: one per policy, each chosen on its own validation rows, as the
            pipeline's evaluate stage thresholds UniGuard (a merge of prompt-only
            TaskGuards gives a prompt one score under every policy, and one cut for all of
            them is a worse guard for each); the model's card stores both.
        max_length: token limit of an input.
        batch_size: inference batch size.
    """

    split: str = "validation"
    aggregate: Literal["mean", "worst"] = "mean"
    threshold_rule: ThresholdRule = "max_f1"
    threshold_scope: Literal["all", "policy"] = "all"
    max_length: int = Field(default=256, ge=8, le=8192)
    batch_size: int = Field(default=64, ge=1)


class SpaceSection(StrictModel):
    """The search space Ω (see `guardray.search.space`).

    Attributes:
        methods: merge methods searched: linear (model soup), task_arithmetic, ties,
            dare_linear, dare_ties, slerp (two models).
        min_models / max_models: how many candidates a merge takes.
        density / lambda_ / drop_rate: ``[low, high]`` ranges of TIES density, lambda, DARE p.
        instructions: also search the instruction of instruction-input models (A.5.1).
        merge_seed: seed of DARE's masks (the exported recipe carries it).
    """

    methods: list[str] = Field(default_factory=lambda: [
        "linear", "task_arithmetic", "ties", "dare_linear", "slerp"])
    min_models: int = Field(default=2, ge=1)
    max_models: int | None = Field(default=None, ge=1)
    density: tuple[float, float] = (0.1, 1.0)
    lambda_: tuple[float, float] = Field(default=(0.5, 1.5), alias="lambda")
    drop_rate: tuple[float, float] = (0.0, 0.9)
    instructions: bool = True
    merge_seed: int = 0

    model_config = ConfigDict(**StrictModel.model_config, populate_by_name=True)

    @field_validator("methods")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        from guardray.search.space import METHODS

        bad = [m for m in v if m not in METHODS]
        if bad or not v:
            raise ValueError(f"unknown merge method(s) {bad or v}; valid: {', '.join(METHODS)}")
        return v

    @model_validator(mode="after")
    def _ranges(self) -> SpaceSection:
        for name, (lo, hi), (vmin, vmax) in (("density", self.density, (0.0, 1.0)),
                                             ("lambda", self.lambda_, (0.0, 10.0)),
                                             ("drop_rate", self.drop_rate, (0.0, 0.99))):
            if not vmin <= lo <= hi <= vmax:
                raise ValueError(f"{name}: range [{lo}, {hi}] must satisfy "
                                 f"{vmin} <= low <= high <= {vmax}")
        if self.density[0] <= 0:
            raise ValueError("density: the low end must be > 0 (density 0 drops a model)")
        return self

    def ranges(self) -> dict[str, tuple[float, float]]:
        return {"density": self.density, "lambda": self.lambda_, "drop_rate": self.drop_rate}


class SearchSection(StrictModel):
    """How the search proceeds.

    Attributes:
        searcher: ``thompson`` (default), ``egreedy`` or ``random`` (guardray's searcher,
            eq. 8-9), or Ray's ``optuna`` (TPE; needs optuna) / ``basic`` (random variants).
        budget: trials in all (T of the paper); T = 1 evaluates the seed point alone.
        seed: seed of the searcher.
        epsilon: exploration probability of ``egreedy``.
        n_initial: ``thompson``: suggestions before the surrogate is used (seed point
            included).
        screen: ``thompson``: evaluate the seed point's drop-one soups before the first draw
            (one trial per member; `guardray.search.thompson`).
        screen_scale: ``thompson``: then evaluate the seed point at both ends of the lambda
            range (two trials; the soup becomes task arithmetic at lambda_max and
            lambda_min).
    """

    searcher: Literal["thompson", "egreedy", "random", "optuna", "basic"] = "thompson"
    budget: int = Field(default=16, ge=1)
    seed: int = 0
    epsilon: float = Field(default=0.3, ge=0, le=1)
    n_initial: int = Field(default=2, ge=1)
    screen: bool = True
    screen_scale: bool = True


class TrialsSection(StrictModel):
    """Resources of each trial (one merge + one validation pass).

    Attributes:
        cpus_per_trial / gpus_per_trial: logical resources a trial reserves (fractions allowed).
        max_concurrent: trials at once (``max_concurrent_trials``).
        torch_threads: intra-op threads of a trial (None: ceil(cpus_per_trial)).
    """

    cpus_per_trial: float = Field(default=1.0, gt=0)
    gpus_per_trial: float = Field(default=0.0, ge=0)
    max_concurrent: int = Field(default=2, ge=1)
    torch_threads: int | None = Field(default=None, ge=1)


class SearchConfig(StageConfig):
    """The merge-search job: UniGuard from a pool of fine-tuned guard classifiers.

    Attributes:
        policies: policy YAML files or folders (descriptions and instruction variants).
        pool, data, objective, space, search, trials: see their sections.
        resume: ``json`` (default) continues an interrupted search from the searcher's JSON
            ledger in ``output_dir`` (reads no pickle; guardray's own searchers only, Ray's
            start over); ``tune`` uses ``Tuner.restore`` on the Tune experiment (Tune
            unpickles its state files: use it only on trusted storage); ``never`` starts
            over.
        overwrite: replace the outputs of a finished search.
        output_dir: the UniGuard checkpoint, recipe, report, Tune runs (local or ``s3://``).
        ray, storage_options: see `StageConfig`.
    """

    JOB_NAME: ClassVar[str] = "search"

    policies: list[str] = Field(default_factory=lambda: ["configs/policies"], min_length=1)
    pool: PoolSection = Field(default_factory=PoolSection)
    data: DataSection
    objective: ObjectiveSection = Field(default_factory=ObjectiveSection)
    space: SpaceSection = Field(default_factory=SpaceSection)
    search: SearchSection = Field(default_factory=SearchSection)
    trials: TrialsSection = Field(default_factory=TrialsSection)
    resume: Literal["json", "tune", "never"] = "json"
    overwrite: bool = False
    output_dir: str = "outputs/search"

    @model_validator(mode="after")
    def _validation_only(self) -> SearchConfig:
        split = self.objective.split
        if self.data.validation_split == self.data.test_split:
            raise ValueError(f"data.validation_split and data.test_split are both "
                             f"{self.data.test_split!r}: the objective would read test rows")
        if split != self.data.validation_split or split == self.data.test_split or \
                split.lower() in ("test", "testing", "eval_test"):
            raise ValueError(
                f"objective.split {split!r}: the merge search scores validation rows only "
                f"(data.validation_split={self.data.validation_split!r}); test rows "
                f"(data.test_split={self.data.test_split!r}) are read once, for the chosen "
                "model, at the end")
        if self.search.searcher == "optuna":
            try:
                import optuna  # noqa: F401
            except ImportError:
                raise ValueError("search.searcher 'optuna' needs the optuna package "
                                 "(pip install -e '.[dev]'); valid without it: thompson, "
                                 "egreedy, random, basic") from None
        return self
