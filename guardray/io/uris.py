"""Locations (local paths, ``file://``, ``s3://``), their filesystems, and atomic small-file I/O.

A *location* is a string naming a file or folder:

- a local path (relative paths are made absolute, so Ray workers on the same node agree),
- ``file:///abs/path``,
- ``s3://bucket/key/prefix``.

S3 settings come from explicit ``storage_options`` first, then from the standard AWS environment
variables (resolved here, in the calling process, so that the resulting filesystem carries them to
Ray workers that never saw those variables):

=================  ======================================================  ====================
storage_options    environment variable (first one set wins)               meaning
=================  ======================================================  ====================
``endpoint_url``   ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``           S3-compatible server
``key``            ``AWS_ACCESS_KEY_ID``                                   access key
``secret``         ``AWS_SECRET_ACCESS_KEY``                               secret key
``token``          ``AWS_SESSION_TOKEN``                                   session token
``region``         ``AWS_REGION``, ``AWS_DEFAULT_REGION``                  region
``anon``           (none)                                                  unsigned requests
=================  ======================================================  ====================

``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`` disables the endpoint variables, as in the AWS SDKs.
Why resolve by hand: pyarrow 26's ``S3FileSystem`` ignores the endpoint variables (it talks to
AWS even when ``AWS_ENDPOINT_URL_S3`` is set; checked against a local server, and
apache/arrow#49643), while s3fs 2026.9 honours them. Resolving once gives both the same answer.
When no key is given or set, credentials are left to each SDK's default chain (config files,
instance profile, web identity), which is what a KubeRay pod with an IAM role needs.

A stage resolves each of its locations once, with `locate`: the `Location` it returns carries
its resolved storage options, and the filesystem built from them is shared (cached per set of
options), so passing ``out.child("state", "x.json")`` down the call chain neither re-reads the
environment nor rebuilds an S3 client. Every function here accepts a string or a `Location`;
``join_uri`` keeps the kind it was given.

Atomic writes: a reader never sees a half-written file. Locally the bytes go to a hidden temp
file (``.<name>.tmp-<random>``) in the destination folder, are fsynced, then ``os.replace``-d
over the final name. On S3 the bytes are buffered in memory and sent as one PUT, which S3
applies atomically per object; nothing is sent when writing fails.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import posixpath
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from guardray.errors import DataError, storage_error

logger = logging.getLogger(__name__)

LOCAL, S3 = "file", "s3"
SUPPORTED_FORMS = "a local path, file:///abs/path or s3://bucket/prefix"
STORAGE_OPTION_KEYS: tuple[str, ...] = ("endpoint_url", "key", "secret", "token", "region", "anon")
DEFAULT_S3_REGION = "us-east-1"
# Temp files are hidden: every reader in guardray.io skips names starting with "." or "_".
TEMP_PREFIX = "."

PathLike = str | os.PathLike[str]
Options = Mapping[str, Any] | None

_ENV_ENDPOINT = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_ENV_REGION = ("AWS_REGION", "AWS_DEFAULT_REGION")


class UriError(DataError):
    """A location string or storage option is malformed or unsupported."""


@dataclass(frozen=True)
class Location:
    """A parsed location, optionally bound to its storage settings (see `locate`).

    Attributes:
        scheme: ``"file"`` or ``"s3"``.
        path: filesystem path: absolute local path, or ``bucket/key`` for S3 (no trailing slash).
        options: the resolved storage options as sorted ``(key, value)`` pairs, or None for a
            location that was only parsed (functions then resolve ``storage_options`` per call).
            Children and parents keep them.
    """

    scheme: str
    path: str
    options: tuple[tuple[str, Any], ...] | None = None

    def __str__(self) -> str:
        return self.uri

    @property
    def bound(self) -> bool:
        """Whether the storage options were resolved (`locate`)."""
        return self.options is not None

    @property
    def storage_options(self) -> dict[str, Any]:
        """The resolved storage options (``{}`` when unbound or local)."""
        return dict(self.options or ())

    @property
    def is_s3(self) -> bool:
        """True for ``s3://`` locations."""
        return self.scheme == S3

    @property
    def uri(self) -> str:
        """Canonical string form: a plain absolute path locally, ``s3://bucket/key`` on S3."""
        return f"s3://{self.path}" if self.is_s3 else self.path

    @property
    def name(self) -> str:
        """Last path component (file or folder name)."""
        return posixpath.basename(self.path) if self.is_s3 else os.path.basename(self.path)

    def parent(self) -> Location:
        """The folder containing this location."""
        dirname = posixpath.dirname if self.is_s3 else os.path.dirname
        return Location(self.scheme, dirname(self.path), self.options)

    def child(self, *parts: str) -> Location:
        """This location joined with relative path ``parts`` (``/``-separated)."""
        for part in parts:
            if not part or part.startswith("/") or ".." in part.split("/"):
                raise UriError(f"cannot join {part!r} to {self.uri!r}: expected a relative name")
        join = posixpath.join if self.is_s3 else os.path.join
        return Location(self.scheme, join(self.path, *parts), self.options)


def parse_uri(uri: str | os.PathLike[str] | Location) -> Location:
    """Parse a location string.

    Args:
        uri: a local path, ``file:///abs/path`` or ``s3://bucket/prefix`` (or a `Location`).

    Returns:
        The parsed `Location`; local paths are made absolute and normalised.

    Raises:
        UriError: empty string, unknown scheme, or ``s3://`` without a bucket.
    """
    if isinstance(uri, Location):
        return uri
    text = os.fspath(uri)
    if not isinstance(text, str) or not text.strip():
        raise UriError(f"empty location {uri!r}: expected {SUPPORTED_FORMS}")
    if "://" not in text:
        return Location(LOCAL, os.path.abspath(os.path.expanduser(text)))
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise UriError(f"{text!r}: file URIs must be file:///absolute/path (no host)")
        return Location(LOCAL, os.path.abspath(unquote(parsed.path)))
    if scheme == "s3":
        bucket, key = parsed.netloc, parsed.path.strip("/")
        if not bucket:
            raise UriError(f"{text!r} has no bucket: expected s3://bucket/prefix")
        return Location(S3, f"{bucket}/{key}" if key else bucket)
    raise UriError(f"unsupported scheme {scheme!r} in {text!r}: expected {SUPPORTED_FORMS}")


def join_uri(uri: str | os.PathLike[str] | Location, *parts: str) -> Any:
    """Join relative ``parts`` onto a location: the canonical string for a string, a `Location`
    (keeping its binding) for a `Location`."""
    child = parse_uri(uri).child(*parts)
    return child if isinstance(uri, Location) else child.uri


def locate(uri: str | os.PathLike[str] | Location,
           storage_options: Mapping[str, Any] | None = None) -> Location:
    """``uri`` parsed and bound to its resolved storage options, once per stage.

    Raises:
        UriError: a malformed location or an unknown storage option.
    """
    loc = parse_uri(uri)
    if loc.bound and not storage_options:
        return loc
    options = resolve_storage_options(loc, storage_options)
    return Location(loc.scheme, loc.path, tuple(sorted(options.items())))


def _options(loc: Location, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A bound location's own options, else ``storage_options`` resolved now."""
    if loc.bound and not storage_options:
        return loc.storage_options
    return resolve_storage_options(loc, storage_options)


def resolve_storage_options(
    uri: str | os.PathLike[str] | Location, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Explicit S3 settings for ``uri``: ``storage_options`` completed from the environment.

    The result is a plain dict of the keys in `STORAGE_OPTION_KEYS` that have a value, safe to
    ship to Ray workers (which may not see the driver's environment). Local locations get ``{}``.

    Raises:
        UriError: an unknown storage option key (the valid ones are listed).
    """
    options = dict(storage_options or {})
    unknown = sorted(set(options) - set(STORAGE_OPTION_KEYS))
    if unknown:
        raise UriError(f"unknown storage option(s) {unknown}: valid keys are {STORAGE_OPTION_KEYS}")
    if not parse_uri(uri).is_s3:
        return {}
    env = os.environ
    ignore_env_endpoint = env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true"
    defaults = {
        "endpoint_url": None if ignore_env_endpoint else _first_env(_ENV_ENDPOINT),
        "key": env.get("AWS_ACCESS_KEY_ID"),
        "secret": env.get("AWS_SECRET_ACCESS_KEY"),
        "token": env.get("AWS_SESSION_TOKEN"),
        "region": _first_env(_ENV_REGION),
    }
    for name, value in defaults.items():
        if options.get(name) is None and value:
            options[name] = value
    if bool(options.get("key")) != bool(options.get("secret")):
        raise UriError("S3 credentials need both 'key' and 'secret' (AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY), or neither to use the default credential chain")
    return {k: v for k, v in options.items() if v is not None}


def _first_env(names: tuple[str, ...]) -> str | None:
    """Value of the first environment variable in ``names`` that is set and non-empty."""
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def get_filesystem(
    uri: str | os.PathLike[str] | Location, storage_options: Mapping[str, Any] | None = None
):
    """A pyarrow filesystem and the path inside it for ``uri``.

    Args:
        uri: a location (see module docstring).
        storage_options: S3 settings; missing ones come from the environment.

    Returns:
        ``(pyarrow.fs.FileSystem, path)``: ``LocalFileSystem`` + absolute path, or
        ``S3FileSystem`` + ``bucket/key``. The S3 filesystem pickles with its endpoint and
        explicit credentials, so it can be handed to Ray tasks.
    """
    loc = parse_uri(uri)
    if not loc.is_s3:
        return _pyarrow_filesystem(None), loc.path
    opts = _options(loc, storage_options)
    return _pyarrow_filesystem(tuple(sorted(opts.items()))), loc.path


@functools.lru_cache(maxsize=32)
def _pyarrow_filesystem(options: tuple[tuple[str, Any], ...] | None):
    """One pyarrow filesystem per set of resolved options (None: the local filesystem)."""
    from pyarrow import fs as pafs

    if options is None:
        return pafs.LocalFileSystem()
    opts = dict(options)
    kwargs: dict[str, Any] = {"region": opts.get("region", DEFAULT_S3_REGION)}
    if opts.get("anon"):
        kwargs["anonymous"] = True
    if opts.get("key"):
        kwargs.update(access_key=opts["key"], secret_key=opts["secret"])
        kwargs["session_token"] = opts.get("token")
    if opts.get("endpoint_url"):
        scheme, endpoint = _split_endpoint(opts["endpoint_url"])
        kwargs.update(scheme=scheme, endpoint_override=endpoint)
    return pafs.S3FileSystem(**kwargs)


def _split_endpoint(endpoint_url: str) -> tuple[str, str]:
    """``"http://host:9000"`` -> ``("http", "host:9000")``; a bare host means https."""
    if "://" not in endpoint_url:
        return "https", endpoint_url.rstrip("/")
    parsed = urlparse(endpoint_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UriError(f"bad S3 endpoint {endpoint_url!r}: expected http(s)://host[:port]")
    return parsed.scheme, parsed.netloc


def get_fsspec_filesystem(
    uri: str | os.PathLike[str] | Location, storage_options: Mapping[str, Any] | None = None
):
    """An fsspec filesystem (``s3fs`` for S3) and the path inside it, with the same settings.

    Useful for libraries that take fsspec filesystems or open files themselves.

    Returns:
        ``(fsspec.AbstractFileSystem, path)``.
    """
    import fsspec

    loc = parse_uri(uri)
    if not loc.is_s3:
        return fsspec.filesystem("file"), loc.path
    opts = _options(loc, storage_options)
    kwargs: dict[str, Any] = {k: opts[k] for k in ("key", "secret", "token", "anon") if k in opts}
    if "endpoint_url" in opts:
        kwargs["endpoint_url"] = opts["endpoint_url"]
    kwargs["client_kwargs"] = {"region_name": opts.get("region", DEFAULT_S3_REGION)}
    return fsspec.filesystem("s3", skip_instance_cache=True, **kwargs), loc.path


def exists(uri: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> bool:
    """True if a file (or folder) exists at ``uri``."""
    from pyarrow import fs as pafs

    filesystem, path = get_filesystem(uri, storage_options)
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def is_hidden_name(name: str) -> bool:
    """Names starting with ``.`` or ``_`` are temp/marker files that readers skip."""
    return name.startswith((".", "_"))


def list_files(
    uri: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    include_hidden: bool = False,
) -> list[str]:
    """Names of the files directly inside folder ``uri``, sorted; sub-folders are not listed.

    Args:
        uri: a folder location.
        storage_options: S3 settings.
        include_hidden: also list names starting with ``.`` or ``_`` (temp files, markers).

    Raises:
        FileNotFoundError: a local folder that does not exist (an S3 prefix with no objects
            is simply empty: S3 has no folders).
        NotADirectoryError: ``uri`` is a file.
    """
    from pyarrow import fs as pafs

    loc = parse_uri(uri)
    filesystem, path = get_filesystem(loc, storage_options)
    if not loc.is_s3:
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"folder {loc.uri!r} does not exist")
        if info.type != pafs.FileType.Directory:
            raise NotADirectoryError(f"{loc.uri!r} is a file, expected a folder")
    selector = pafs.FileSelector(path, recursive=False, allow_not_found=True)
    names = [
        info.base_name
        for info in filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File
    ]
    return sorted(n for n in names if include_hidden or not is_hidden_name(n))


def makedirs(uri: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> None:
    """Create folder ``uri`` and its parents locally; a no-op on S3 (no folders there).

    Raises:
        StorageError: the storage refused (read-only filesystem, full disk, no permission).
        FileExistsError / NotADirectoryError: the path runs through a file.
    """
    loc = parse_uri(uri)
    if not loc.is_s3:
        try:
            os.makedirs(loc.path, exist_ok=True)
        except OSError as exc:
            mapped = storage_error(exc, loc.path)
            if mapped is None:
                raise
            raise mapped from exc


def delete_file(uri: PathLike, storage_options: Options = None) -> None:
    """Delete one file; missing files are not an error."""
    filesystem, path = get_filesystem(uri, storage_options)
    with contextlib.suppress(FileNotFoundError):
        filesystem.delete_file(path)


@contextlib.contextmanager
def open_atomic(
    uri: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> Iterator[io.BufferedIOBase]:
    """Open ``uri`` for writing so that it appears complete or not at all.

    Use as ``with open_atomic(uri) as f: f.write(...)``. If the block raises, nothing is
    published and a file already at ``uri`` is left untouched.

    Local: writes a hidden temp file in the destination folder (created if needed), fsyncs it,
    then renames it over ``uri``. S3: buffers in memory and PUTs once on success.

    Raises:
        StorageError: locally, the storage refused the write (full disk or quota, read-only
            filesystem, no permission: `guardray.errors.STORAGE_ERRNOS`); names ``uri``. The
            temp file is removed and a file already at ``uri`` is untouched.
    """
    loc = parse_uri(uri)
    if loc.is_s3:
        buffer = io.BytesIO()
        yield buffer
        _put_s3(loc, buffer.getvalue(), storage_options)
        return
    folder = os.path.dirname(loc.path)
    tmp = os.path.join(folder, f"{TEMP_PREFIX}{loc.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    except OSError as exc:
        mapped = storage_error(exc, loc.path)
        if mapped is None:
            raise
        raise mapped from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, loc.path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        mapped = storage_error(exc, loc.path)
        if mapped is not None:
            raise mapped from exc
        raise
    _fsync_dir(folder)
    logger.debug("wrote %s atomically", loc.uri)


def _put_s3(loc: Location, data: bytes, storage_options: Mapping[str, Any] | None) -> None:
    """One PUT of ``data`` to an S3 location (S3 makes a single object write atomic)."""
    filesystem, path = get_filesystem(loc, storage_options)
    with filesystem.open_output_stream(path) as stream:
        stream.write(data)
    logger.debug("wrote %s (%d bytes)", loc.uri, len(data))


def _fsync_dir(folder: str) -> None:
    """Make a rename durable; some filesystems cannot fsync folders, which is fine to skip."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(
    uri: str | os.PathLike[str], data: bytes, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Atomically write ``data`` to ``uri``; returns the canonical location string."""
    with open_atomic(uri, storage_options) as handle:
        handle.write(data)
    return parse_uri(uri).uri


def write_text_atomic(
    uri: str | os.PathLike[str], text: str, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Atomically write UTF-8 ``text`` to ``uri``; returns the canonical location string."""
    return write_bytes_atomic(uri, text.encode("utf-8"), storage_options)


def write_json_atomic(
    uri: str | os.PathLike[str], obj: Any, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Atomically write ``obj`` as indented, key-sorted JSON; returns the location string.

    Raises:
        TypeError: ``obj`` is not JSON-serialisable (nothing is written).
    """
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text_atomic(uri, text, storage_options)


def read_bytes(uri: PathLike, storage_options: Options = None) -> bytes:
    """The whole content of file ``uri``.

    Raises:
        FileNotFoundError: naming the location.
    """
    filesystem, path = get_filesystem(uri, storage_options)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"file {parse_uri(uri).uri!r} does not exist") from exc


def read_text(uri: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> str:
    """The content of file ``uri`` decoded as UTF-8."""
    return read_bytes(uri, storage_options).decode("utf-8")


def read_json(uri: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> Any:
    """Parse file ``uri`` as JSON.

    Raises:
        ValueError: invalid JSON, naming the file, line and column.
    """
    text = read_text(uri, storage_options)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{parse_uri(uri).uri!r} is not valid JSON: {exc}") from exc
