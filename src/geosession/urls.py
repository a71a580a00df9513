"""Files named by a URL (``https://``, ``s3://``), which geosession neither fetches nor
writes: told apart from paths, so that the error says what to do instead of naming a
missing file ``https:/example.org/...`` (a Path's single slash)."""

from __future__ import annotations

import re
from pathlib import Path

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/+(?=[^/])")
"""A URL, also as a Path writes one (https:/host/..., the scheme's // made one /)."""


def url_in(name: str | Path) -> tuple[str, str] | None:
    """``name`` as the URL it is (and its scheme, lower case), or None for a path (a
    Windows drive's ``C:/data`` included)."""
    match = _URL.match(str(name))
    if match is None or len(match[1]) == 1:
        return None
    return _URL.sub(lambda m: f"{m[1]}://", str(name), count=1), match[1].lower()


def is_web(scheme: str) -> bool:
    """Whether curl reads such a URL."""
    return scheme in ("http", "https", "ftp")
