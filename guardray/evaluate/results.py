"""The records of an evaluation, as written to and read back from its output folder.

- `DatasetResult`: one model on one dataset (metrics record, labels, scores, predictions).
- `write_result` / `load_results`: ``<dataset>/metrics.json`` + ``predictions.parquet``, and
  the whole folder back (for comparison reports).
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
from typing import Any

import numpy as np

from guardray import schema as S
from guardray.errors import DataError
from guardray.evaluate import columns as C
from guardray.metrics import binary as M

METRICS_JSON = "metrics.json"
PREDICTIONS = "predictions.parquet"


class EvaluationError(DataError):
    """The evaluation cannot run as configured; the message says what to change."""


@dataclasses.dataclass
class DatasetResult:
    """The outcome of one model on one dataset.

    Attributes:
        model: model display name.
        kind: ``classifier`` or ``judge``.
        dataset: dataset display name.
        slug: the dataset's folder name.
        record: the flat metrics record (what ``<dataset>/metrics.json`` holds).
        labels: (n,) true labels.
        scores: (n,) P(unsafe) for classifiers, None for judges (hard answers only).
        predictions: (n,) 0/1, or -1 where a judge's answer was unparseable.
        frame: the predictions table (sample columns + `guardray.evaluate.columns`).
    """

    model: str
    kind: str
    dataset: str
    slug: str
    record: dict[str, Any]
    labels: np.ndarray
    scores: np.ndarray | None
    predictions: np.ndarray
    frame: Any = None


def slugify(name: str, taken: set[str] | None = None) -> str:
    """A folder name for ``name`` (lowercase letters, digits, '-'), unique within ``taken``."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "data"
    slug, k = base, 2
    while taken is not None and slug in taken:
        slug, k = f"{base}-{k}", k + 1
    if taken is not None:
        taken.add(slug)
    return slug


def write_result(out: str, r: DatasetResult, so) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from guardray.io import uris

    folder = uris.join_uri(out, r.slug)
    uris.write_json_atomic(uris.join_uri(folder, METRICS_JSON), M.nan_to_none(r.record), so)
    frame = r.frame
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, compression="zstd")
    uris.write_bytes_atomic(uris.join_uri(folder, PREDICTIONS), buf.getvalue(), so)


def load_results(eval_dir: str, storage_options=None) -> list[DatasetResult]:
    """Read back the results an evaluation wrote (for comparison reports).

    Raises:
        EvaluationError: ``eval_dir`` holds no evaluation (no ``metrics.json``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from guardray.io import uris

    top = uris.join_uri(eval_dir, METRICS_JSON)
    if not uris.exists(top, storage_options):
        raise EvaluationError(f"{eval_dir}: no {METRICS_JSON}; is it a `guardray evaluate` "
                              "output folder?")
    summary = uris.read_json(top, storage_options)
    results = []
    taken: set[str] = set()
    for record in summary["datasets"]:
        slug = record.get("folder") or slugify(record["dataset"], taken)
        data = uris.read_bytes(uris.join_uri(eval_dir, slug, PREDICTIONS), storage_options)
        frame = pq.read_table(pa.BufferReader(data)).to_pandas()
        kind = record.get("kind", summary.get("kind", "classifier"))
        scores = frame[C.SCORE].to_numpy(dtype=np.float64) if kind == "classifier" else None
        record = {k: (math.nan if v is None and k in _NUMERIC else v) for k, v in record.items()}
        results.append(DatasetResult(summary["model"], kind, record["dataset"], slug, record,
                                     frame[S.LABEL].to_numpy().astype(np.int64), scores,
                                     frame[C.PREDICTION].to_numpy().astype(np.int64), frame))
    return results


_NUMERIC = ("precision", "recall", "f1", "macro_f1", "accuracy", "auroc", "auprc",
            "ms_per_prompt", "prompts_per_s", "threshold")
