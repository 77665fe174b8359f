"""Configuration of the synthetic data generation job (``guardray generate``, ``jobs/generate.py``).

Sections: ``expand`` (how many requests per policy and their variety knobs), ``llm`` (the
generator: `guardray.llm.LLMConfig`), ``parse`` (validation and retries of failed rows),
``reflect`` (the self-reflection relabel pass, GuardFormer 3.1), ``diversify`` (synthetic
policies from the unified data, GuardFormer 3.3), ``dedup`` (exact and semantic
near-duplicate removal of the result), ``templates`` (prompt overrides), plus the output
folder, seed, splits and Ray connection.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from guardray.config.base import SplitConfig, StageConfig, StrictModel
from guardray.dedup import DedupSettings
from guardray.llm.config import LLMConfig

DEFAULT_PERSONAS = [
    "a university student", "a small-business owner", "a retired teacher",
    "a software engineer", "a worried parent", "a journalist", "a nurse", "a teenager",
    "a recent immigrant", "a freelance designer",
]
DEFAULT_STYLES = ["casual", "formal", "blunt", "polite", "urgent", "rambling", "curious"]
DEFAULT_LENGTHS = ["one short sentence", "two sentences", "a short paragraph"]
DEFAULT_TOPICS = [
    "medical advice", "legal advice", "hate speech", "self-harm", "election misinformation",
    "personal data and privacy", "weapons", "gambling", "hacking and malware",
    "academic cheating", "competitor products", "political opinions",
]


def _non_empty_unique(v: list[str], name: str) -> list[str]:
    items = [s.strip() for s in v]
    if not items or any(not s for s in items):
        raise ValueError(f"{name} needs at least one non-empty entry")
    return list(dict.fromkeys(items))


class ExpandConfig(StrictModel):
    """Requests per policy and their variety knobs (drawn per request, seeded).

    Attributes:
        unsafe_per_policy: requests for non-compliant (unsafe) prompts per policy.
        safe_per_policy: requests for compliant (safe) prompts per policy.
        personas, styles, lengths, languages: each request draws one of each.
        borderline_fraction: share of requests asking for a borderline case (else clear).
        few_shot: policy examples of the same label shown as earlier chat turns (0: none).
    """

    unsafe_per_policy: int = Field(default=50, ge=0)
    safe_per_policy: int = Field(default=50, ge=0)
    personas: list[str] = Field(default_factory=lambda: list(DEFAULT_PERSONAS))
    styles: list[str] = Field(default_factory=lambda: list(DEFAULT_STYLES))
    lengths: list[str] = Field(default_factory=lambda: list(DEFAULT_LENGTHS))
    languages: list[str] = Field(default_factory=lambda: ["English"])
    borderline_fraction: float = Field(default=0.3, ge=0.0, le=1.0)
    few_shot: int = Field(default=2, ge=0, le=8)

    @field_validator("personas", "styles", "lengths", "languages")
    @classmethod
    def _lists(cls, v: list[str], info) -> list[str]:
        return _non_empty_unique(v, f"expand.{info.field_name}")


class ParseConfig(StrictModel):
    """Validation of generated answers and retries of failed rows.

    Attributes:
        missing_label: an answer without a (complete) label: ``requested`` takes the label
            the request asked for, ``reject`` drops it as ``missing_label``.
        min_prompt_chars, max_prompt_chars: bounds on a prompt's length.
        reject_copied_examples: drop prompts that repeat a few-shot example verbatim.
        retries: extra generation attempts (new seed) for rows whose answer was rejected.
    """

    missing_label: Literal["requested", "reject"] = "requested"
    min_prompt_chars: int = Field(default=8, ge=1)
    max_prompt_chars: int = Field(default=2000, ge=16)
    reject_copied_examples: bool = True
    retries: int = Field(default=1, ge=0, le=5)


class ReflectConfig(StrictModel):
    """The self-reflection pass (GuardFormer 3.1): the generator re-judges its own label.

    Attributes:
        enabled: run the pass (else ``label`` = ``label_initial``).
        max_tokens: token limit of the verdict.
        temperature: sampling temperature of the verdict (0: greedy).
        on_unparsed: a verdict without a readable label: ``keep_initial`` keeps the
            generator's label, ``reject`` drops the row as ``reflection_unparsed``.
        update_rationale: when the label changes, use the verdict's reason as rationale.
        few_shot: policy examples per label shown as answered reflection turns (0: none).
    """

    enabled: bool = True
    max_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    on_unparsed: Literal["keep_initial", "reject"] = "keep_initial"
    update_rationale: bool = True
    few_shot: int = Field(default=1, ge=0, le=4)


class DiversifyConfig(StrictModel):
    """Policy diversification (GuardFormer 3.3): new policies from the unified data.

    Attributes:
        enabled: run it after the given policies' data is generated.
        num_policies: synthetic policies to ask for (invalid answers are dropped).
        examples_per_request: labelled rows of the unified data shown per request.
        topics: topic hints, one drawn per request (variety).
        max_tokens: token limit of a policy answer.
        unsafe_per_policy, safe_per_policy: requests per synthetic policy.
    """

    enabled: bool = True
    num_policies: int = Field(default=8, ge=0)
    examples_per_request: int = Field(default=6, ge=1, le=50)
    topics: list[str] = Field(default_factory=lambda: list(DEFAULT_TOPICS))
    max_tokens: int = Field(default=320, ge=16)
    unsafe_per_policy: int = Field(default=20, ge=0)
    safe_per_policy: int = Field(default=20, ge=0)

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: list[str]) -> list[str]:
        return _non_empty_unique(v, "diversify.topics")


class GenerateDedupConfig(DedupSettings):
    """The dedup step that runs after generation (`guardray.generate.dedup_step`).

    Exact (normalised-text hash) and semantic near-duplicate removal of everything the run
    generated; kept rows go to ``{output_dir}/dedup`` (the input of the later stages), removed
    rows with the kept row each duplicates to ``{output_dir}/dedup/removed``. The knobs are
    the dedup job's (`guardray.dedup.config.DedupSettings`).

    Attributes:
        enabled: run the step (the raw shards stay in ``output_dir`` either way).
    """

    enabled: bool = True


class TemplatesConfig(StrictModel):
    """Prompt template overrides (`guardray.generate.templates`).

    Attributes:
        file: YAML file with some of the template keys of ``prompts.yaml``.
        overrides: inline template texts by name (applied after ``file``).
    """

    file: str | None = None
    overrides: dict[str, str] = Field(default_factory=dict)


class GenerateConfig(StageConfig):
    """The synthetic data generation job.

    Attributes:
        policies: policy YAML files or folders.
        output_dir: where shards, rejects and the manifest go (local path or ``s3://``).
        seed: seeds the request knobs, per-row sampling seeds and splits.
        task_size: requests per task; each task writes one shard, the unit of resumption.
        splits: validation/test fractions (by row id).
        expand, llm, parse, reflect, diversify, dedup, templates: see their classes.
        ray: Ray connection.
        storage_options: S3 settings for ``s3://`` outputs.
    """

    JOB_NAME: ClassVar[str] = "generate"

    policies: list[str] = Field(default_factory=lambda: ["configs/policies"], min_length=1)
    output_dir: str = "outputs/generate"
    seed: int = 0
    task_size: int = Field(default=64, ge=1)
    splits: SplitConfig = Field(default_factory=SplitConfig)
    expand: ExpandConfig = Field(default_factory=ExpandConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    parse: ParseConfig = Field(default_factory=ParseConfig)
    reflect: ReflectConfig = Field(default_factory=ReflectConfig)
    diversify: DiversifyConfig = Field(default_factory=DiversifyConfig)
    dedup: GenerateDedupConfig = Field(default_factory=GenerateDedupConfig)
    templates: TemplatesConfig = Field(default_factory=TemplatesConfig)

    @model_validator(mode="after")
    def _something_to_do(self) -> "GenerateConfig":
        if self.expand.unsafe_per_policy + self.expand.safe_per_policy == 0:
            raise ValueError("expand.unsafe_per_policy and expand.safe_per_policy are both 0: "
                             "nothing to generate")
        return self
