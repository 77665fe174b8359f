"""Parquet shards of sample rows (`guardray.schema`): validated writes, atomic publish, reads.

A stage's output is a folder (local or ``s3://``) of shards plus a ``manifest.json``
(`guardray.io.manifest`).

Naming scheme (deterministic, so a resumed stage finds its finished shards):

- ``shard_name(index, prefix="part")`` gives ``{prefix}-{index:05d}.parquet``, e.g.
  ``part-00003.parquet``; the stage picks the index (input shard number, task number...).
  Indices of 100000 and more get more digits; `list_shards` sorts numerically, not as text.
- ``content_shard_name(table, prefix)`` gives ``{prefix}-{digest}.parquet`` where the digest
  hashes the table's ``id`` column in order: the same rows always get the same name (used by
  `guardray.io.ray_data.write_dataset_shards`, where tasks have no stable index).
- Prefixes match ``[A-Za-z0-9][A-Za-z0-9_.=-]*``: never starting with ``.`` or ``_``.

Readers list only ``*.parquet`` names not starting with ``.`` or ``_``: temp files of
unfinished writes (``.part-00003.parquet.tmp-...``) and markers are invisible.

Writes are atomic: rows are fully converted and validated into an Arrow table before anything
is opened, and the Parquet bytes are published with `guardray.io.uris.open_atomic`. A failing
row generator or a schema error therefore leaves no shard and never touches an existing one.

Empty folders: `read_shards` raises `NoShardsError` (usually a wrong path or an unfinished
upstream stage) unless called with ``allow_empty=True``, which returns a 0-row table with the
sample schema. A stage that kept no rows should still write one empty shard, so its output
folder is distinguishable from a missing one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from guardray import schema
from guardray.errors import DataError
from guardray.io import uris

logger = logging.getLogger(__name__)

SHARD_SUFFIX = ".parquet"
DEFAULT_PREFIX = "part"
COMPRESSION = "zstd"
_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")
_INDEX_RE = re.compile(r"^(.*)-(\d+)\.parquet$")
_ALLOWED_VALUES: dict[str, tuple[Any, ...]] = {
    schema.LABEL: tuple(schema.LABEL_NAMES),
    schema.LABEL_INITIAL: tuple(schema.LABEL_NAMES),
    schema.SOURCE: schema.SOURCES,
    schema.SPLIT: schema.SPLITS,
}
IfExists = Literal["error", "overwrite", "skip"]
PathLike = uris.PathLike
Options = uris.Options

RowsLike = Any  # pa.Table | pa.RecordBatch | pandas.DataFrame | Mapping[col, seq] | Iterable[row]


class ShardSchemaError(DataError):
    """Rows or a shard file do not match the sample schema; the message names the column."""


class CorruptShardError(DataError):
    """A shard file cannot be read as Parquet (truncated, garbage, ...); names the file."""


class NoShardsError(DataError, FileNotFoundError):
    """A shard folder holds no shards."""


# --------------------------------------------------------------------------- names


def shard_name(index: int, prefix: str = DEFAULT_PREFIX) -> str:
    """Deterministic shard file name ``{prefix}-{index:05d}.parquet``.

    Raises:
        ValueError: negative or non-integer index, or an invalid prefix.
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"shard index must be an int >= 0, got {index!r}")
    return f"{_check_prefix(prefix)}-{index:05d}{SHARD_SUFFIX}"


def content_shard_name(table: pa.Table, prefix: str = DEFAULT_PREFIX) -> str:
    """Shard name derived from the rows' ids (in order): same rows, same name.

    Returns:
        ``{prefix}-{16 hex chars}.parquet``.
    """
    digest = hashlib.blake2b(digest_size=8)
    for value in table.column(schema.ID).to_pylist():
        digest.update(value.encode("utf-8"))
        digest.update(b"\x1f")
    return f"{_check_prefix(prefix)}-{digest.hexdigest()}{SHARD_SUFFIX}"


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"bad shard prefix {prefix!r}: use letters, digits, '_', '.', '=', '-', "
            "not starting with '.' or '_' (those names are hidden from readers)"
        )
    return prefix


def _check_name(name: str) -> str:
    if "/" in name or os.sep in name or not name.endswith(SHARD_SUFFIX):
        raise ValueError(f"bad shard name {name!r}: expected a bare file name ending "
                         f"{SHARD_SUFFIX}")
    _check_prefix(name[: -len(SHARD_SUFFIX)])
    return name


def _flat(exc: BaseException) -> str:
    """An Arrow/OS error's message on one line (Parquet's decoding errors span several)."""
    return " ".join(str(exc).split())


def is_shard_name(name: str) -> bool:
    """True for names readers treat as shards (``*.parquet``, not hidden)."""
    return name.endswith(SHARD_SUFFIX) and not uris.is_hidden_name(name)


def _sort_key(name: str) -> tuple[str, int, str]:
    """Sort ``part-9`` before ``part-10`` and ``part-99999`` before ``part-100000``."""
    match = _INDEX_RE.match(name)
    return (match.group(1), int(match.group(2)), name) if match else (name, -1, name)


# --------------------------------------------------------------------------- validation


def to_sample_table(rows: RowsLike, *, where: str = "rows") -> pa.Table:
    """Convert rows to a table with exactly the sample schema, validating everything.

    Args:
        rows: a ``pyarrow.Table``/``RecordBatch``, a pandas DataFrame, a mapping of column
            name to sequence (e.g. a numpy batch from ``map_batches``), or an iterable of row
            dicts (fully consumed here).
        where: what to call the data in error messages (a file name, a stage...).

    Returns:
        A table whose schema equals `guardray.schema.arrow_schema()` (columns in order,
        integers cast to int8).

    Raises:
        ShardSchemaError: missing/extra columns, unconvertible types, nulls, empty ids, or
            label/source/split values outside the allowed sets; the message names the column.
    """
    return _conform(_as_table(rows, where), where)


def _as_table(rows: RowsLike, where: str) -> pa.Table:
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    if type(rows).__module__.split(".")[0] == "pandas":
        try:
            return pa.Table.from_pandas(rows, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:  # Arrow names the column
            raise ShardSchemaError(f"{where}: cannot convert the DataFrame ({exc})") from exc
    if isinstance(rows, Mapping):
        return _columns_to_table(dict(rows), where)
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise ShardSchemaError(f"{where}: expected a table, mapping of columns or iterable of "
                               f"row dicts, got {type(rows).__name__}")
    return _columns_to_table(_rows_to_columns(rows, where), where)


def _rows_to_columns(rows: Iterable[Mapping[str, Any]], where: str) -> dict[str, list[Any]]:
    expected = set(schema.COLUMNS)
    columns: dict[str, list[Any]] = {name: [] for name in schema.COLUMNS}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ShardSchemaError(f"{where}: row {i} is a {type(row).__name__}, expected a dict")
        if row.keys() != expected:
            raise ShardSchemaError(f"{where}: row {i}: {_column_diff(row.keys())}")
        for name in schema.COLUMNS:
            columns[name].append(row[name])
    return columns


def _columns_to_table(columns: dict[str, Any], where: str) -> pa.Table:
    _check_column_names(columns.keys(), where)
    arrays = {}
    for name in schema.COLUMNS:
        try:
            arrays[name] = pa.array(columns[name])
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise ShardSchemaError(
                f"{where}: column {name!r}: cannot convert values ({exc})"
            ) from exc
    return pa.table(arrays)


def _column_diff(names: Iterable[str]) -> str:
    names = list(names)
    missing = [c for c in schema.COLUMNS if c not in names]
    extra = sorted(c for c in names if c not in schema.COLUMNS)
    parts = [f"missing column(s) {missing}"] if missing else []
    parts += [f"unexpected column(s) {extra}"] if extra else []
    return "; ".join(parts) + f" (expected exactly {list(schema.COLUMNS)})"


def _check_column_names(names: Iterable[str], where: str) -> None:
    names = list(names)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ShardSchemaError(f"{where}: duplicate column(s) {duplicates}")
    if set(names) != set(schema.COLUMNS):
        raise ShardSchemaError(f"{where}: {_column_diff(names)}")


def _conform(table: pa.Table, where: str) -> pa.Table:
    _check_column_names(table.column_names, where)
    target = schema.arrow_schema()
    columns = [_conform_column(table.column(f.name), f, where) for f in target]
    return pa.Table.from_arrays(columns, schema=target)


def _conform_column(column: pa.ChunkedArray, field: pa.Field, where: str) -> pa.ChunkedArray:
    column = _cast_column(column, field, where)
    if column.null_count:
        first = pc.index(pc.is_null(column), True).as_py()
        raise ShardSchemaError(f"{where}: column {field.name!r} has {column.null_count} null "
                               f"value(s) (first at row {first}); nulls are not allowed")
    if field.name == schema.ID and pc.any(pc.equal(pc.utf8_length(column), 0)).as_py():
        raise ShardSchemaError(f"{where}: column {field.name!r} has empty ids "
                               "(use guardray.schema.sample_id(policy_id, text))")
    allowed = _ALLOWED_VALUES.get(field.name)
    if allowed is not None and len(column):
        invalid = pc.invert(pc.is_in(column, pa.array(allowed, field.type)))
        also = ""
        if field.name == schema.SOURCE:  # imported rows carry their provenance (schema docs)
            invalid = pc.and_(invalid, pc.invert(pc.match_substring_regex(
                column, schema.IMPORTED_SOURCE_PATTERN)))
            also = " or an import provenance (dist==version:path, hub:id:split, file:path)"
        bad = pc.unique(pc.filter(column, invalid))
        if len(bad):
            first = pc.index(invalid, True).as_py()
            raise ShardSchemaError(f"{where}: column {field.name!r} has invalid value(s) "
                                   f"{bad.to_pylist()[:5]} (first at row {first}); valid "
                                   f"values are {list(allowed)}{also}")
    return column


def _is_other_string(arrow_type: pa.DataType) -> bool:
    return pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type)


def _cast_column(column: pa.ChunkedArray, field: pa.Field, where: str) -> pa.ChunkedArray:
    actual, expected = column.type, field.type
    if actual == expected:
        return column
    compatible = (
        pa.types.is_null(actual)
        or (pa.types.is_string(expected) and _is_other_string(actual))
        or (pa.types.is_integer(expected) and pa.types.is_integer(actual))
        or pa.types.is_dictionary(actual)
    )
    if not compatible:
        raise ShardSchemaError(
            f"{where}: column {field.name!r} has type {actual}, expected {expected}"
        )
    try:
        return column.cast(expected, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ShardSchemaError(f"{where}: column {field.name!r}: cannot cast {actual} to "
                               f"{expected} ({exc})") from exc


# --------------------------------------------------------------------------- write


def write_shard(
    rows: RowsLike,
    dir_uri: str | os.PathLike[str],
    *,
    index: int | None = None,
    name: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    if_exists: IfExists = "error",
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Validate ``rows`` and atomically write them as one shard in folder ``dir_uri``.

    The file name is ``shard_name(index, prefix)`` when ``index`` is given, else ``name``
    (a bare ``*.parquet`` name), else `content_shard_name` of the rows.

    Args:
        rows: anything `to_sample_table` accepts (an iterable of dicts is fully consumed
            before any file is opened, so a failing generator writes nothing).
        dir_uri: destination folder (local path, ``file://`` or ``s3://``).
        index: stage-chosen shard number.
        name: explicit file name (instead of ``index``).
        prefix: name prefix with ``index`` or content naming.
        if_exists: a shard already at that name: ``"error"`` raises `FileExistsError`,
            ``"skip"`` keeps it and returns its location without writing, ``"overwrite"``
            replaces it atomically.
        storage_options: S3 settings (see `guardray.io.uris`).

    Returns:
        The shard's location string.

    Raises:
        ShardSchemaError: rows do not match the sample schema (nothing is written).
        FileExistsError: the shard exists and ``if_exists="error"``.
    """
    if if_exists not in ("error", "overwrite", "skip"):
        raise ValueError(f"if_exists={if_exists!r}: expected 'error', 'overwrite' or 'skip'")
    if index is not None and name is not None:
        raise ValueError("give either index or name, not both")
    fixed_name = shard_name(index, prefix) if index is not None else None
    fixed_name = _check_name(name) if name is not None else fixed_name
    target = uris.join_uri(dir_uri, fixed_name) if fixed_name else None
    if target and if_exists != "overwrite" and uris.exists(target, storage_options):
        return _existing(target, if_exists)
    table = to_sample_table(rows, where=f"shard {fixed_name or '(content-named)'} for {dir_uri}")
    if target is None:
        target = uris.join_uri(dir_uri, content_shard_name(table, prefix))
        if if_exists != "overwrite" and uris.exists(target, storage_options):
            return _existing(target, if_exists)
    with uris.open_atomic(target, storage_options) as handle:
        pq.write_table(table, handle, compression=COMPRESSION)
    logger.info("wrote shard %s (%d rows)", target, table.num_rows)
    return str(target)


def _existing(target, if_exists: IfExists) -> str:
    if if_exists == "skip":
        logger.info("shard %s exists: kept", target)
        return str(target)
    raise FileExistsError(f"shard {str(target)!r} already exists; pass if_exists='skip' to keep it "
                          "or 'overwrite' to replace it")


def shard_exists(
    dir_uri: str | os.PathLike[str],
    index: int | None = None,
    *,
    name: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    storage_options: Mapping[str, Any] | None = None,
) -> bool:
    """True if the finished shard ``shard_name(index, prefix)`` (or ``name``) is in ``dir_uri``.

    Because writes are atomic, existence means the shard is complete: resumable stages skip it.
    """
    if (index is None) == (name is None):
        raise ValueError("give exactly one of index or name")
    file_name = shard_name(index, prefix) if index is not None else _check_name(name)
    return uris.exists(uris.join_uri(dir_uri, file_name), storage_options)


# --------------------------------------------------------------------------- read


def list_shards(
    dir_uri: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Locations of the shards in folder ``dir_uri``, sorted by (prefix, index) / name.

    Skips non-Parquet files (``manifest.json``) and hidden temp files.

    Raises:
        FileNotFoundError: a local folder that does not exist.
    """
    names = [n for n in uris.list_files(dir_uri, storage_options) if is_shard_name(n)]
    return [uris.join_uri(dir_uri, n) for n in sorted(names, key=_sort_key)]


def read_shard(uri: PathLike, storage_options: Options = None) -> pa.Table:
    """Read and validate one shard file.

    Raises:
        CorruptShardError: the file is not readable Parquet (the message names the file).
        ShardSchemaError: the file is Parquet but not a sample shard (names file and column).
        FileNotFoundError: no such file.
    """
    location = uris.parse_uri(uri).uri
    filesystem, path = uris.get_filesystem(uri, storage_options)
    try:
        with filesystem.open_input_file(path) as handle:
            table = pq.read_table(handle)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise CorruptShardError(f"shard {location!r} is not readable Parquet ({_flat(exc)}); "
                                "delete it and rerun the stage that wrote it") from exc
    return _conform(table, f"shard {location!r}")


def read_shards(
    dir_uri: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    allow_empty: bool = False,
) -> pa.Table:
    """Read every shard in folder ``dir_uri`` into one table (shards in `list_shards` order).

    Args:
        dir_uri: shard folder.
        storage_options: S3 settings.
        allow_empty: return a 0-row table when the folder has no shards instead of raising.

    Raises:
        NoShardsError: no shards and not ``allow_empty``.
        CorruptShardError / ShardSchemaError: a bad shard, named in the message.
    """
    paths = list_shards(dir_uri, storage_options)
    if not paths:
        if allow_empty:
            return schema.arrow_schema().empty_table()
        raise NoShardsError(f"no shards (*{SHARD_SUFFIX}) in {uris.parse_uri(dir_uri).uri!r}; "
                            "check the path, or pass allow_empty=True")
    tables = [read_shard(p, storage_options) for p in paths]
    logger.info("read %d shard(s) from %s", len(tables), dir_uri)
    return pa.concat_tables(tables)


def check_shard_schema(uri: PathLike, storage_options: Options = None) -> None:
    """Check one shard's Parquet footer (cheap: no data pages) against the sample schema.

    Column names and types must match; values are not read (they were validated on write).

    Raises:
        CorruptShardError / ShardSchemaError: naming the file.
    """
    location = uris.parse_uri(uri).uri
    filesystem, path = uris.get_filesystem(uri, storage_options)
    try:
        with filesystem.open_input_file(path) as handle:
            file_schema = pq.read_schema(handle)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise CorruptShardError(f"shard {location!r} is not readable Parquet ({_flat(exc)}); "
                                "delete it and rerun the stage that wrote it") from exc
    where = f"shard {location!r}"
    _check_column_names(file_schema.names, where)
    for field in schema.arrow_schema():
        actual = file_schema.field(field.name).type
        if actual != field.type:
            raise ShardSchemaError(f"{where}: column {field.name!r} has type {actual}, "
                                   f"expected {field.type}")


def check_shard_values(uri: PathLike, storage_options: Options = None) -> None:
    """Check one shard's schema and the values of its constrained columns (labels, split,
    source), reading only those columns: a hand-written shard with ``label`` 7 fails here, by
    file and row, instead of inside a training worker.

    Raises:
        CorruptShardError / ShardSchemaError: naming the file (and the first bad row).
    """
    check_shard_schema(uri, storage_options)
    location = uris.parse_uri(uri).uri
    filesystem, path = uris.get_filesystem(uri, storage_options)
    names = list(_ALLOWED_VALUES)
    try:
        with filesystem.open_input_file(path) as handle:
            table = pq.read_table(handle, columns=names)
    except (pa.ArrowException, OSError) as exc:
        raise CorruptShardError(f"shard {location!r} is not readable Parquet ({_flat(exc)}); "
                                "delete it and rerun the stage that wrote it") from exc
    where = f"shard {location!r}"
    fields = {f.name: f for f in schema.arrow_schema()}
    for name in names:
        _conform_column(table.column(name), fields[name], where)


def check_shard_data(uri: PathLike, storage_options: Options = None) -> None:
    """Read every data page of one shard (row group by row group, nothing kept): the check
    for damage a footer check misses, such as corrupt data pages.

    Raises:
        CorruptShardError: naming the file and the row group that does not decode.
    """
    location = uris.parse_uri(uri).uri
    filesystem, path = uris.get_filesystem(uri, storage_options)
    group = None
    try:
        with filesystem.open_input_file(path) as handle:
            reader = pq.ParquetFile(handle)
            for group in range(reader.num_row_groups):
                reader.read_row_group(group)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        where = "" if group is None else f", row group {group}"
        raise CorruptShardError(f"shard {location!r}{where} is not readable Parquet "
                                f"({_flat(exc)}); delete it and rerun the stage "
                                "that wrote it") from exc
