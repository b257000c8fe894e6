"""Showing a stored trace in the reader's language (tracking-rules §8; tracking.traces)."""

from django import template

from tracking.traces import localized_detail

register = template.Library()
register.filter("localized_detail", localized_detail)
