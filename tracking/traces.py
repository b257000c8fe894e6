"""Traces are stored in English and translated when shown (tracking-rules §8).

The engine writes a trace in English whoever asked for the decision (tracking.decisions.english), so a
stored trace never depends on who was signed in. What a reader sees in their own language are the words
the organisation's vocabulary gives a translation: the kinds of entity in a party's label
("User 'Bob' <bob@…>") and the Track options' labels ("option 4 'No email messages'"); the rest of a
trace is the engine's own English.
"""

from __future__ import annotations

import functools
import re

from django.utils import translation

from tracking.choices import EntityKind, TrackOption
from tracking.decisions import english


@functools.cache
def _vocabulary() -> tuple[re.Pattern[str], dict[str, object]]:
    labels: dict[str, object] = {english(k.label): k.label for k in EntityKind}
    options: dict[str, object] = {english(o.label): o.label for o in TrackOption}
    kinds = "|".join(re.escape(k) for k in sorted(labels, key=len, reverse=True))
    quoted = "|".join(re.escape(o) for o in sorted(options, key=len, reverse=True))
    # A kind starts an entity label: before its quoted name, or after "new " before the address.
    pattern = re.compile(
        rf"(?<![\w-])(?P<kind>{kinds})(?= ['\"])|(?<=new )(?P<new>{kinds})(?= <)|'(?P<option>{quoted})'"
    )
    return pattern, {**labels, **options}


def localized_detail(detail: str) -> str:
    """A stored trace step's detail with its entity kinds and Track option labels in the active language."""
    language = translation.get_language() or "en"
    if language.split("-")[0] == "en" or not isinstance(detail, str):
        return detail
    pattern, words = _vocabulary()

    def swap(m: re.Match[str]) -> str:
        if m.group("option") is not None:
            return f"'{words[m.group('option')]}'"
        return str(words[m.group("kind") or m.group("new")])

    return pattern.sub(swap, detail)
