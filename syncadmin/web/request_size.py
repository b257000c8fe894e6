"""Refuse request bodies over MAX_REQUEST_MB with 413 before anything reads or spools them.

Django reads a body only when a view asks for it, but then a multipart upload is spooled to the temp
folder part by part, however large, before any form can say "too large". This middleware comes first:
a declared Content-Length over the limit is answered at once, unread; a body without one (chunked
transfer encoding) is read through a counter that stops at the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _


class BodyTooLarge(RequestDataTooBig):
    """A chunked body passed the limit while being read; the middleware answers 413."""


class CountingStream:
    """A request body without Content-Length, readable up to `limit` bytes; one byte more raises."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._read = 0
        self.exceeded = False

    def _count(self, data: bytes) -> bytes:
        self._read += len(data)
        if self._read > self._limit:
            self.exceeded = True
            raise BodyTooLarge(f"the request body is larger than {self._limit} bytes")
        return data

    def read(self, size: int | None = -1) -> bytes:
        # Never more than one byte past the limit in one call, whatever the caller asks for.
        room = self._limit - self._read + 1
        wanted = room if size is None or size < 0 else min(size, room)
        return self._count(self._stream.read(wanted))

    def readline(self, size: int | None = -1) -> bytes:
        room = self._limit - self._read + 1
        wanted = room if size is None or size < 0 else min(size, room)
        return self._count(self._stream.readline(wanted))

    def __iter__(self) -> CountingStream:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        pass


def max_request_bytes() -> int:
    return int(settings.MAX_REQUEST_BYTES)


def _too_large(limit: int) -> HttpResponse:
    message = _("The request is larger than %(mb)s MB and was refused unread.") % {
        "mb": limit // (1024 * 1024)
    }
    return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = max_request_bytes()
        declared = request.META.get("CONTENT_LENGTH") or ""
        counter: CountingStream | None = None
        if declared.strip():
            try:
                length = int(declared)
            except ValueError:
                return HttpResponse(_("Bad Content-Length."), status=400, content_type="text/plain")
            if length > limit:
                return _too_large(limit)
        elif request.META.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            # Django would read nothing of a body without Content-Length; read it, counted.
            counter = CountingStream(request.META["wsgi.input"], limit)
            setattr(request, "_stream", counter)  # noqa: B010  (HttpRequest.read reads _stream)
        response = self.get_response(request)
        if counter is not None and counter.exceeded:
            # The view (or Django's body parser) hit the limit; whatever it answered, it is a 413.
            return _too_large(limit)
        return response
