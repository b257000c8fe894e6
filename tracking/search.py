"""Search across tracked emails (tracking-rules §2): subject, parties and body, scoped by role.

The index is the database's own full-text search, kept in step with the table by the database itself,
so that every way a TrackedEmail is written (the scan's bulk insert, `create`, the admin) is indexed:

- PostgreSQL: `search_document`, a stored generated tsvector column with a GIN index (migration 0016).
  Subject weighs A, the parties (sender, sender name, recipient addresses) B, the plain-text body C. The
  configuration is 'simple' (no stemming, no stop words): organisations mail in several languages, and
  a word is found as it was written. The column is not a model field: as one, every query of tracked
  emails (the decision log's join, timelines, the email page) would read the tsvector too.
  It indexes at most SUBJECT_CHARS, PARTIES_CHARS and BODY_CHARS characters of each part: PostgreSQL
  refuses a tsvector over 1 MB, and an email that large would otherwise fail to be tracked at all.
- SQLite: an FTS5 external-content table over the table's own columns (subject; sender, sender name and
  recipients; body text), kept in step by triggers; FTS5 has no such limit and indexes them whole.

What a query means, on both databases: words and "quoted phrases" must all occur, `-word` must not,
`or` between two groups means either (websearch syntax). Any text is a valid query: the user's words are
passed as data (plainto/phraseto_tsquery, FTS5 strings), never as query syntax.

Results are ranked (ts_rank with the weights above; FTS5 bm25 with subject 10, each party column 4,
body 1) among the CANDIDATES newest matches the user may see: ranking every match of a common word at a
million emails would read every matching row; the newest thousand are read from one index. The page
shows the first RESULTS and, on request, up to MORE_RESULTS.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank, SearchVectorField
from django.db import connection
from django.db.models import FloatField, QuerySet, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Left
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from tracking.models import TrackedEmail
from tracking.search_index import BODY_COLUMN, FTS_TABLE, TABLE, WEIGHTS

SUBJECT_CHARS = 2_000
PARTIES_CHARS = 20_000
BODY_CHARS = 100_000
CANDIDATES = 1_000
RESULTS = 50
MORE_RESULTS = 200
QUERY_CHARS = 500  # longer input is cut: a query is typed, not pasted documents
QUERY_TERMS = 20

CONFIG = "simple"
# Around a highlighted word in a headline; private-use characters, so that the headline can be
# HTML-escaped first and the marks put in afterwards.
_START, _STOP = "\ue000", "\ue001"
_WORD = re.compile(r"\w")
_TOKENS = re.compile(r'(-?)"([^"]*)"?|(\S+)')


@dataclass
class Group:
    """Terms that must all occur (each a word or a phrase) and terms that must not."""

    must: list[str] = field(default_factory=list)
    must_not: list[str] = field(default_factory=list)


def parse(text: str) -> list[Group]:
    """The query as groups, any of which may match; terms without a letter or digit are dropped, and so
    is a group with nothing that must occur (it could only be answered by reading every row)."""
    groups = [Group()]
    terms = 0
    for match in _TOKENS.finditer(text[:QUERY_CHARS]):
        negated, phrase, word = match.group(1), match.group(2), match.group(3)
        if word is not None and word.lower() == "or":
            groups.append(Group())
            continue
        if word is not None:
            negated, term = ("-", word[1:]) if word.startswith("-") else ("", word)
        else:
            term = phrase
        if not _WORD.search(term) or terms >= QUERY_TERMS:
            continue
        terms += 1
        (groups[-1].must_not if negated else groups[-1].must).append(term)
    return [g for g in groups if g.must]


def search(user: User | AnonymousUser, text: str) -> QuerySet[TrackedEmail]:
    """The tracked emails `user` may see that match `text`, best first, each with its `rank` (see the
    module's docstring); none when the text has nothing to look for."""
    groups = parse(text)
    if not groups:
        return TrackedEmail.objects.none()
    candidates = _matching(TrackedEmail.objects.visible_to(user), groups)
    # The newest first, from the (timeline_at, id) index: for a common word a few thousand rows are read.
    ids = list(candidates.order_by("-timeline_at", "-id").values_list("pk", flat=True)[:CANDIDATES])
    return (
        TrackedEmail.objects.filter(pk__in=ids)
        .annotate(rank=_rank(groups, ids))
        .order_by("-rank", "-timeline_at", "-id")
    )


def matching(emails: QuerySet[TrackedEmail], text: str) -> QuerySet[TrackedEmail]:
    """Every one of `emails` that matches `text`, unranked and in no order (B14 counts them)."""
    groups = parse(text)
    return _matching(emails, groups) if groups else emails.none()


def _document() -> RawSQL:
    return RawSQL(f'"{TABLE}"."search_document"', [], output_field=SearchVectorField())


def _matching(emails: QuerySet[TrackedEmail], groups: list[Group]) -> QuerySet[TrackedEmail]:
    if connection.vendor == "postgresql":
        return emails.alias(document=_document()).filter(document=_pg_query(groups))
    matches = RawSQL(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s", [fts_query(groups)])
    return emails.filter(pk__in=matches)


def _rank(groups: list[Group], ids: list[int]) -> Any:
    """Each candidate's rank, higher is better.

    On SQLite, bm25() per row in a correlated subquery runs the whole FTS5 query again for every row
    (1.4 s for 1,000 candidates of a common word at 100,000 emails); one pass over the matches between
    the lowest and highest candidate id takes a few milliseconds, and the ranks go back as a CASE.
    """
    if connection.vendor == "postgresql":
        return SearchRank(_document(), _pg_query(groups))
    if not ids:
        return Value(0.0, output_field=FloatField())
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT rowid, -bm25({FTS_TABLE}, {WEIGHTS}) FROM {FTS_TABLE} "
            f"WHERE {FTS_TABLE} MATCH %s AND rowid BETWEEN %s AND %s",
            [fts_query(groups), min(ids), max(ids)],
        )
        wanted = set(ids)
        ranks = [(pk, rank) for pk, rank in cursor.fetchall() if pk in wanted]
    if not ranks:
        return Value(0.0, output_field=FloatField())
    whens = " ".join(["WHEN %s THEN %s"] * len(ranks))
    return RawSQL(
        f'CASE "{TABLE}"."id" {whens} ELSE 0.0 END',
        [value for pair in ranks for value in pair],
        output_field=FloatField(),
    )


def headlines(emails: Sequence[TrackedEmail], text: str) -> dict[int, SafeString]:
    """For each email, a passage of its body around the words found, HTML-escaped, the words in <mark>."""
    groups = parse(text)
    ids = [e.pk for e in emails]
    if not groups or not ids:
        return {}
    if connection.vendor == "postgresql":
        rows = (
            TrackedEmail.objects.filter(pk__in=ids)
            .annotate(
                headline=SearchHeadline(
                    Left("body_text", BODY_CHARS),
                    _pg_query(groups),
                    config=CONFIG,
                    start_sel=_START,
                    stop_sel=_STOP,
                    max_words=24,
                    min_words=8,
                    max_fragments=2,
                    fragment_delimiter=" … ",
                )
            )
            .values_list("pk", "headline")
        )
        found = list(rows)
    else:
        marks = ", ".join(["%s"] * len(ids))
        with connection.cursor() as cursor:
            # A range and `+rowid IN`, not `rowid IN`: FTS5 would run the query again for each id (_rank).
            cursor.execute(
                f"SELECT rowid, snippet({FTS_TABLE}, {BODY_COLUMN}, %s, %s, '…', 24) FROM {FTS_TABLE} "
                f"WHERE {FTS_TABLE} MATCH %s AND rowid BETWEEN %s AND %s AND +rowid IN ({marks})",
                [_START, _STOP, fts_query(groups), min(ids), max(ids), *ids],
            )
            found = cursor.fetchall()
    return {pk: _marked(text or "") for pk, text in found}


def _marked(text: str) -> SafeString:
    return mark_safe(escape(text).replace(_START, "<mark>").replace(_STOP, "</mark>"))


def _pg_query(groups: list[Group]) -> SearchQuery:
    """The groups as one tsquery, each term passed as data: plainto_tsquery for a word (its parts must
    all occur), phraseto_tsquery for a quoted phrase."""
    query: SearchQuery | None = None
    for group in groups:
        part: SearchQuery | None = None
        for term, negated in [(t, False) for t in group.must] + [(t, True) for t in group.must_not]:
            kind = "phrase" if " " in term.strip() else "plain"
            one = SearchQuery(term, config=CONFIG, search_type=kind)
            one = ~one if negated else one
            part = one if part is None else part & one
        assert part is not None
        query = part if query is None else query | part
    assert query is not None
    return query


def fts_query(groups: list[Group]) -> str:
    """The groups as an FTS5 query in which every term is a string: FTS5 reads nothing in it as syntax
    (no column filters, prefixes, NEAR or operators); its tokenizer splits it into a phrase."""

    def quoted(term: str) -> str:
        return '"' + term.replace('"', '""') + '"'

    parts = []
    for group in groups:
        must = " AND ".join(quoted(t) for t in group.must)
        parts.append("(" + must + "".join(f" NOT {quoted(t)}" for t in group.must_not) + ")")
    return " OR ".join(parts)
