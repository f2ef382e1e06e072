"""Keep the server's file system out of its answers: no absolute paths in responses.

``Collection.info()`` reports the collection's directory and library errors name the files
they concern; a client has no use for either, and they tell an attacker the layout of the
host. :func:`public_info` drops the path from an info dict and :func:`redact_paths` reduces
every absolute path in a message to its last component.
"""

from __future__ import annotations

import re
from typing import Any

# An absolute path of two or more components, not part of a word or a URL ("a/b", "http://").
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"/]+/)+([^\s'\"/]*)")


def redact_paths(text: str) -> str:
    """``text`` with each absolute path replaced by its last component."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "<dir>", text)


def public_info(info: dict[str, Any]) -> dict[str, Any]:
    """A collection's ``info()`` without server-side details (its directory)."""
    return {key: value for key, value in info.items() if key != "path"}
