"""Environment of the dedup tests.

Ray Data 2.60's Parquet reader starts 32 footer-reading actors per read by default (5-15 s on
2 cores); one is plenty for test-sized folders. Set before the session's ray.init (fixtures run
after every conftest is imported). Row helpers live in ``dedup_corpus.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
