"""Paging of the web lists, in one place: how many rows a user wants, and which rows a page holds.

Lists that may grow without bound (the decision log, the CRM directory, the audit of org setting
changes) page by keyset: a page starts after, or ends before, a row (its id in the query string),
so that no page needs an OFFSET or a COUNT(*). The mailbox list is small and shows "page n of m"
with its count, so it pages by number.
"""

from __future__ import annotations

import json
from collections.abc import Sequence, Set
from dataclasses import dataclass
from functools import cached_property
from typing import Generic, TypeVar

from django.contrib.auth.models import User
from django.core.exceptions import EmptyResultSet
from django.core.paginator import Page, Paginator
from django.db import connections
from django.db.models import F, Model, OrderBy, Q, QuerySet
from django.http import HttpRequest

from syncadmin.web.ids import parse_id
from tracking.models import PersonalOptions

M = TypeVar("M", bound=Model)

DEFAULT_ROWS_PER_PAGE: int = PersonalOptions._meta.get_field("rows_per_page").get_default()


def rows_per_page(user: User) -> int:
    """The user's Personal Options "records per page"; reading it writes nothing (no options row is made)."""
    value = PersonalOptions.objects.filter(user_id=user.pk).values_list("rows_per_page", flat=True).first()
    return value or DEFAULT_ROWS_PER_PAGE


def cursor_param(request: HttpRequest, name: str) -> int | None:
    """The row id a query parameter holds, or None when it holds none."""
    return parse_id(request.GET.get(name, ""))


def _is_null(name: str, value: object) -> Q:
    return Q(**{f"{name}__isnull": True}) if value is None else Q(**{name: value})


def _beyond(order: Sequence[str], values: dict[str, object], *, forward: bool, nullable: Set[str]) -> Q:
    """The rows after (forward) or before the row with these values, in the list's order.

    (a, b) after (x, y) is a > x or (a = x and b > y); a "-" field compares the other way. In a
    `nullable` field NULL sorts above every value (as PostgreSQL's own indexes have it, and _ordering
    asks of every database).
    """
    q = Q()
    for i, field in enumerate(order):
        name = field.lstrip("-")
        ascending = not field.startswith("-")
        upwards = ascending == forward  # looking for larger values of this field
        value = values[name]
        if name in nullable and value is None:
            if upwards:
                continue  # nothing is above NULL
            step = Q(**{f"{name}__isnull": False})  # below it, every value
        else:
            step = Q(**{f"{name}__{'gt' if upwards else 'lt'}": value})
            if name in nullable and upwards:
                step |= Q(**{f"{name}__isnull": True})
        for earlier in order[:i]:
            step &= _is_null(earlier.lstrip("-"), values[earlier.lstrip("-")])
        q |= step
    return q


def _nullable(model: type[Model], order: Sequence[str]) -> frozenset[str]:
    names = (f.lstrip("-") for f in order)
    return frozenset(n for n in names if n != "pk" and getattr(model._meta.get_field(n), "null", False))


def _ordering(order: Sequence[str], nullable: Set[str]) -> list[str | OrderBy]:
    """ORDER BY for `order`, NULLs above every value in a nullable field on every database."""
    out: list[str | OrderBy] = []
    for field in order:
        name = field.lstrip("-")
        if name not in nullable:
            out.append(field)
        elif field.startswith("-"):
            out.append(F(name).desc(nulls_first=True))
        else:
            out.append(F(name).asc(nulls_last=True))
    return out


def _reversed(order: Sequence[str]) -> list[str]:
    return [f[1:] if f.startswith("-") else f"-{f}" for f in order]


def _values_of(row: Model, order: Sequence[str]) -> dict[str, object]:
    return {f.lstrip("-"): getattr(row, f.lstrip("-")) for f in order}


class KeysetPage(Generic[M]):
    """One page of a list in `order`: `next` and `previous` are the ids to start after / end before."""

    def __init__(
        self,
        queryset: QuerySet[M],
        order: Sequence[str],
        rows: list[M],
        *,
        more_after: bool,
        more_before: bool | None,
        paged: bool,
    ) -> None:
        self._queryset = queryset
        self._order = order
        self._nullable = _nullable(queryset.model, order)
        self._more_after = more_after
        self._more_before = more_before  # None: not known yet, asked when a page shows it
        self.rows = rows
        self.paged = paged  # a page other than the first was asked for

    @property
    def next(self) -> int | None:
        """Where the next page starts (after its last row), None on the last page."""
        return self.rows[-1].pk if self.rows and self._more_after else None

    @cached_property
    def previous(self) -> int | None:
        """Where the previous page ends (before its first row), None on the first page."""
        if not self.rows:
            return None
        more = self._more_before
        if more is None:
            values = _values_of(self.rows[0], self._order)
            earlier = _beyond(self._order, values, forward=False, nullable=self._nullable)
            more = self._queryset.filter(earlier).exists()
        return self.rows[0].pk if more else None


def keyset_page(
    queryset: QuerySet[M],
    *,
    order: Sequence[str],
    size: int,
    start_after: int | None = None,
    end_before: int | None = None,
) -> KeysetPage[M]:
    """The `size` rows of `queryset` in `order` (unique; its last field the primary key) that follow
    the row `start_after`, or that precede the row `end_before`, or else the first `size`.

    One extra row tells whether the next page in the direction of travel exists; the other direction
    is an EXISTS (LIMIT 1). Both can use an index on `order`.
    """
    nullable = _nullable(queryset.model, order)
    ordering, reverse_ordering = _ordering(order, nullable), _ordering(_reversed(order), nullable)
    cursor = end_before if end_before is not None else start_after
    if cursor is None:
        rows = list(queryset.order_by(*ordering)[: size + 1])
        return KeysetPage(
            queryset, order, rows[:size], more_after=len(rows) > size, more_before=False, paged=False
        )
    fields = [f.lstrip("-") for f in order]
    if fields in (["id"], ["pk"]):
        values: dict[str, object] = {fields[0]: cursor}
    else:
        anchor = queryset.model._default_manager.filter(pk=cursor).values(*fields).first()
        if anchor is None:  # a row that is gone: start again at the top
            return keyset_page(queryset, order=order, size=size)
        values = anchor
    if end_before is None:
        after = _beyond(order, values, forward=True, nullable=nullable)
        rows = list(queryset.filter(after).order_by(*ordering)[: size + 1])
        return KeysetPage(
            queryset, order, rows[:size], more_after=len(rows) > size, more_before=None, paged=True
        )
    before = _beyond(order, values, forward=False, nullable=nullable)
    rows = list(queryset.filter(before).order_by(*reverse_ordering)[: size + 1])
    shown = rows[:size][::-1]
    more_after = bool(shown) and (
        queryset.filter(
            _beyond(order, _values_of(shown[-1], order), forward=True, nullable=nullable)
        ).exists()
    )
    return KeysetPage(queryset, order, shown, more_after=more_after, more_before=len(rows) > size, paged=True)


COUNT_CAP = 1_000
TRUSTED_ESTIMATE = 10 * COUNT_CAP


@dataclass(frozen=True)
class RowCount:
    """How many rows a list holds: exact up to COUNT_CAP, above it the planner's estimate (PostgreSQL) or
    only "more than COUNT_CAP" (SQLite, which has no estimate)."""

    value: int
    exact: bool
    estimated: bool = False  # above the cap, `value` is the planner's estimate (else only "more than")
    cap: int = COUNT_CAP


def counted(queryset: QuerySet[M]) -> RowCount:
    """Count at most COUNT_CAP + 1 rows (LIMIT in a subquery, so a big table is never counted whole).

    On PostgreSQL the planner's estimate comes first (an EXPLAIN, no rows read): far above the cap
    (TRUSTED_ESTIMATE) it is the answer, and even the capped count, 1,001 rows read for a page of 50,
    is skipped; nearer the cap the rows are counted, since an estimate may be off several times. The cap is
    low (1,000) because the count runs on every view of the decision log (B5).
    """
    plain = queryset.order_by()
    estimate = _planner_estimate(plain)
    if estimate is not None and estimate > TRUSTED_ESTIMATE:
        return RowCount(estimate, exact=False, estimated=True)
    n = plain[: COUNT_CAP + 1].count()
    if n <= COUNT_CAP:
        return RowCount(n, exact=True)
    if estimate is None:
        return RowCount(n, exact=False)
    # the planner may guess low; the list holds at least the rows just counted
    return RowCount(max(estimate, n), exact=False, estimated=True)


def _planner_estimate(queryset: QuerySet[M]) -> int | None:
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:  # a filter that can match nothing (a user with no mailbox): Django sends no SQL
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        (plan,) = cursor.fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def numbered_page(queryset: QuerySet[M], request: HttpRequest, size: int) -> Page[M]:
    """Page ?page=n of a short list (a number out of range gives the nearest page)."""
    return Paginator(queryset, size).get_page(request.GET.get("page"))
