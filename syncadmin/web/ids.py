"""Ids from query strings and forms, parsed strictly.

`str.isdigit()` accepts characters `int()` refuses (superscripts such as "²") and `int()` accepts
digits of any script and any length; an id here is 1–18 ASCII digits (it fits a 64-bit key) or nothing.
"""

from __future__ import annotations

import re

_ID = re.compile(r"[0-9]{1,18}")


def parse_id(raw: object) -> int | None:
    """The id in `raw`, or None when it is not one."""
    if not isinstance(raw, str) or not _ID.fullmatch(raw):
        return None
    return int(raw)
