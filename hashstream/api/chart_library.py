"""The dashboard's charting library: plotly.js as the installed ``plotly`` package ships it.

No copy lives in this repository and nothing is fetched from a CDN, so the dashboard works
offline and upgrades with the package. The file is found without importing ``plotly`` (a
Python import of the package costs far more than reading one path), and gzipped once per
process: 4.8 MB on the wire becomes about 1.4 MB.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import cache
from pathlib import Path

PACKAGE = "plotly"
BUNDLE = ("package_data", "plotly.min.js")


@cache
def bundle_path() -> Path | None:
    """plotly.min.js inside the installed ``plotly`` package, or None when it is missing."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder).joinpath(*BUNDLE)
        if path.is_file():
            return path
    return None


@cache
def gzipped(path: Path) -> bytes:
    """The file's bytes gzipped (level 6), kept for the process's life."""
    return gzip.compress(path.read_bytes(), compresslevel=6)
