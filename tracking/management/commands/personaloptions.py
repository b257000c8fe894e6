from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tracking.actions import do_set_personal_options
from tracking.choices import TRACK_OPTION_WORDS, AutoCreate, TrackOption
from tracking.models import PersonalOptions

TRACK_CHOICES = [str(v) for v in TrackOption.values] + list(TRACK_OPTION_WORDS)


class Command(BaseCommand):
    help = "Show or change a user's Personal Options (Track option, automatic record creation)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--track", choices=TRACK_CHOICES, help="0–4 or all/responses/crm/email-enabled/none"
        )
        parser.add_argument(
            "--auto-create", choices=AutoCreate.values, help="create records for unresolved senders"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user named {options['username']!r}")
        track = options["track"]
        if track is not None or options["auto_create"] is not None:
            value = (
                None if track is None else (int(track) if track.isdigit() else int(TRACK_OPTION_WORDS[track]))
            )
            opts = do_set_personal_options(
                user, track=value, auto_create=options["auto_create"], actor_label="cli"
            )
        else:
            opts = PersonalOptions.objects.of(user)
        self.stdout.write(f"track: {opts.track} ({TrackOption(opts.track).label})")
        self.stdout.write(f"auto_create: {opts.auto_create}")
        self.stdout.write(f"allow_send_on_behalf: {'true' if opts.allow_send_on_behalf else 'false'}")
