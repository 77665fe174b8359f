"""Text normalisation and hashing for exact deduplication (pure: no Ray, no files).

Two prompts are *exact duplicates* when their normalised texts are equal. Normalisation is
deliberately conservative, so that it only merges texts a reader would call the same:

1. Unicode NFKC (full-width letters, ligatures and compatibility forms fold to one spelling),
2. case folding (``"Straße"`` and ``"STRASSE"`` match),
3. every run of whitespace (spaces, tabs, newlines, NBSP, zero-width spaces) becomes one
   space, and leading/trailing whitespace is dropped.

Punctuation is kept: ``"kill the process"`` and ``"kill the process?"`` differ, and near-duplicate
removal (embeddings) is the tool for such pairs.

The hash is BLAKE2b-64 of the UTF-8 normalised text, as an unsigned 64-bit integer (numpy
``uint64`` for a batch). 64 bits keep the exact-dedup key table at 8 bytes a row; the chance of
any collision among 10M distinct texts is about 3e-6.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

import numpy as np

# \s covers Unicode whitespace; zero-width characters (ZWSP, ZWNJ, ZWJ, BOM) are not \s but
# are invisible, so they count as whitespace here.
_SPACE_RE = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff]+")


def normalize_text(text: str) -> str:
    """Normalise ``text`` for exact-duplicate comparison (NFKC, casefold, collapse whitespace).

    Example:
        >>> normalize_text("  Hello\\u00a0\\tWORLD\\n")
        'hello world'
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE_RE.sub(" ", folded).strip()


def text_hash(text: str) -> int:
    """BLAKE2b-64 of the normalised text as an int in ``[0, 2**64)``."""
    digest = hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def text_hashes(texts: Iterable[str]) -> np.ndarray:
    """`text_hash` of each text, shape ``(n,)`` ``uint64``."""
    return np.fromiter((text_hash(t) for t in texts), dtype=np.uint64)


def row_key(values) -> int:
    """BLAKE2b-64 of a row's values (in column order): the identity of a row during dedup.

    Two rows get the same key only if every value is equal (up to a 64-bit collision, which
    the stage detects when the ids differ).
    """
    h = hashlib.blake2b(digest_size=8)
    for v in values:
        data = str(v).encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))  # length prefix: ("ab","c") != ("a","bc")
        h.update(data)
    return int.from_bytes(h.digest(), "little")
