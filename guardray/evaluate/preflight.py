"""What an evaluation checks before it starts Ray (`guardray.evaluate.runner.run_evaluation`).

An evaluation is cheap to set up and slow to run (a model load per Ray actor, then inference),
so every check that needs no Ray runs first and ends with one line:

- `check_setup`, before any data is read:
  - the output location is a writable folder (`guardray.io.folders.check_output_location`),
    and it does not hold an earlier evaluation unless ``overwrite`` (``--overwrite``): a new
    result used to replace the old one silently and leave the old dataset folders beside it;
  - the classifier is a model guardray can load (`guardray.modeling.check.check_model`):
    ``--model`` naming a folder without ``config.json``, without safetensors weights, with
    only pickle weights, or needing remote code failed inside a Ray actor after 20 s with a
    traceback of hundreds of lines;
  - the validation data is not one of the evaluated files (same path, benchmark and split):
    the threshold would be tuned on the rows it is then scored on;
- `check_validation_rows`, once the data is loaded: the validation rows are not a copy or a
  subset of an evaluated dataset (the same file under another name);
- `clear_earlier_result`, with ``overwrite``, after every check passed: removes the files
  of the earlier evaluation (its metrics, dataset folders, report, plots, manifest) so that
  the folder then holds the new result only.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from guardray import schema as S
from guardray.config.base import ConfigError
from guardray.evaluate.results import METRICS_JSON, EvaluationError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
REPORT_FILES = ("report.md", "report.html", "plots")  # `guardray.evaluate.report` writes these


def earlier_result(out: str, storage_options: dict | None = None) -> str | None:
    """The file that marks ``out`` as holding an evaluation (metrics or manifest), or None."""
    from guardray.io import uris

    for name in (METRICS_JSON, MANIFEST):
        target = uris.join_uri(out, name)
        if uris.exists(target, storage_options):
            return target
    return None


def check_setup(cfg) -> None:
    """The checks before any data is read (see the module docstring).

    Raises:
        NotADirectoryError / StorageError: the output location is a file or not writable.
        FileExistsError: it holds an earlier evaluation and ``cfg.overwrite`` is false.
        ModelError: ``cfg.model`` cannot be loaded.
        ConfigError: the validation data is one of the evaluated files.
    """
    from guardray.io import uris
    from guardray.io.folders import check_output_location

    so = cfg.storage_options or None
    out = uris.parse_uri(cfg.output_dir).uri
    check_output_location(out, "output_dir (--out)")
    marker = earlier_result(out, so)
    if marker is not None and not cfg.overwrite:
        raise FileExistsError(f"output_dir (--out) {out} holds an earlier evaluation "
                              f"({os.path.basename(marker)}); pass --overwrite (overwrite=true) "
                              "to replace it, or choose another folder")
    if cfg.model and not cfg.judge:
        from guardray.modeling.check import check_model

        check_model(cfg.model, trust_remote_code=cfg.inference.trust_remote_code,
                    field="model (--model)", trust_field="inference.trust_remote_code")
    if cfg.validation_data is not None and cfg.threshold.rule != "fixed":
        for i, d in enumerate(cfg.data):
            if _same_source(cfg.validation_data, d):
                raise ConfigError(
                    f"validation_data (--validation-data) is data[{i}] itself "
                    f"({d.path or 'bench:' + str(d.benchmark)}"
                    f"{', split ' + d.split if d.split else ''}): the threshold would be tuned "
                    "on the rows it is scored on; give held-out labelled data, or another "
                    "split of the file (--validation-split)")


def _same_source(a, b) -> bool:
    """Same file (or folder, or hub benchmark) and the same split filter."""
    if (a.benchmark, a.split) != (b.benchmark, b.split):
        return False
    if not a.path or not b.path:
        return a.path == b.path  # both the hub download of one benchmark
    from guardray.io import uris

    la, lb = uris.parse_uri(a.path), uris.parse_uri(b.path)
    if la.is_s3 or lb.is_s3:
        return la.uri.rstrip("/") == lb.uri.rstrip("/")
    try:
        return os.path.samefile(la.path, lb.path)
    except OSError:
        return os.path.realpath(la.path) == os.path.realpath(lb.path)


def check_validation_rows(val, loaded) -> None:
    """Refuse validation rows that are a copy or a subset of an evaluated dataset's rows
    (by text); log a warning when only some of them are.

    Args:
        val: the loaded validation data (``.frame`` with a ``text`` column, ``.name``).
        loaded: the loaded evaluated datasets.

    Raises:
        EvaluationError: every validation text is among one dataset's texts.
    """
    texts = set(val.frame[S.TEXT])
    if not texts:
        return
    for d in loaded:
        shared = texts & set(d.frame[S.TEXT])
        if len(shared) == len(texts):
            raise EvaluationError(
                f"validation data {val.name}: all its {len(texts)} distinct text(s) are rows of "
                f"the evaluated dataset {d.name}: the threshold would be tuned on the rows it "
                "is scored on; give held-out labelled data")
        if shared:
            log.warning("validation data %s shares %d of its %d distinct texts with %s; the "
                        "threshold sees those rows' labels", val.name, len(shared), len(texts),
                        d.name)


def clear_earlier_result(out: str, storage_options: dict | None = None) -> list[str]:
    """Remove the earlier evaluation in ``out`` (its top-level files, report, plots and the
    dataset folders its ``metrics.json`` / manifest list); other files are left alone.

    Returns:
        The removed locations.
    """
    from guardray.io import uris

    if earlier_result(out, storage_options) is None:
        return []
    names = {METRICS_JSON, MANIFEST, *REPORT_FILES, *_dataset_folders(out, storage_options)}
    fs, root = uris.get_fsspec_filesystem(out, storage_options)
    removed = []
    for name in sorted(names):
        if not name or "/" in name or name in (".", ".."):
            continue
        path = f"{root.rstrip('/')}/{name}"
        if fs.exists(path):
            fs.rm(path, recursive=True)
            removed.append(uris.join_uri(out, name))
    log.info("--overwrite: removed the earlier evaluation in %s (%d item(s))", out, len(removed))
    return removed


def _dataset_folders(out: str, storage_options: dict | None) -> set[str]:
    from guardray.io import uris

    folders: set[str] = set()
    for name, pick in ((METRICS_JSON, lambda d: [r.get("folder") for r in d.get("datasets") or []
                                                 if isinstance(r, dict)]),
                       (MANIFEST, lambda d: list(((d.get("extra") or {}).get("datasets")
                                                  or {}).values()))):
        target = uris.join_uri(out, name)
        try:
            data: Any = uris.read_json(target, storage_options)
            folders.update(str(f) for f in pick(data) if f)
        except (OSError, ValueError, AttributeError, TypeError):
            continue  # a missing or damaged file lists nothing
    return folders
