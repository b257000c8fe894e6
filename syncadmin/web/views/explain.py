"""(placeholder: this module is being written)"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from syncadmin.web.permissions import user_required


@user_required
def explain(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "Explain"})


@user_required
def what_if(request: HttpRequest) -> HttpResponse:
    return render(request, "web/placeholder.html", {"title": "What if"})
