"""The layers of the code, checked by reading every import of the product's and the dev tools' modules.

A module may import its own layer and the layers below it, never one above: the engine and the sources
sit under the models, the pipeline under scanning, jobs under the commands and pages that start them, and
the development tools (simulators, demo, load generator) on top, where nothing of the product sees them.
Imports inside functions and under TYPE_CHECKING count like the others.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tracking", "syncadmin")

# Bottom first. A module belongs to the layer of the longest prefix naming it (a prefix names the module
# itself or a package and everything in it); a new module must be given a place here.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "syncadmin.env",
            "syncadmin.formats",
            "syncadmin.settings",
            "tracking.apps",
            "tracking.bulk",
            "tracking.checks",
            "tracking.choices",
            "tracking.crypto",
            "tracking.dates",
            "tracking.jobqueues",
            "tracking.locks",
            "tracking.messages",
            "tracking.orgsettings",
            "tracking.roles",
            "tracking.search_index",
        ),
    ),
    ("engine and sources", ("tracking.content", "tracking.decisions", "tracking.sources")),
    ("models", ("tracking.models",)),
    (
        "loaders and actions",
        (
            "tracking.context",
            "tracking.actions",
            "tracking.runs",
            "tracking.pushstate",
            "tracking.timeline",
            "tracking.search",
        ),
    ),
    ("pipeline", ("tracking.pipeline", "tracking.whatif")),
    ("scanning", ("tracking.scanning", "tracking.folders", "tracking.reprocessing", "tracking.push")),
    (
        "jobs",
        (
            "tracking.jobs",
            "tracking.cron",
            "tracking.health",
            "tracking.imports",
            "tracking.notifications",
            "tracking.bulkjobs",
            "tracking.pushjobs",
            "tracking.invitations",
            "tracking.workers",
            "tracking.push_ews",
            "tracking.ews_stream",
        ),
    ),
    (
        "interfaces",
        (
            "tracking.admin",
            "tracking.management",
            "syncadmin.web",
            "syncadmin.oidc",
            "syncadmin.urls",
            "syncadmin.wsgi",
        ),
    ),
    ("development tools", ("syncadmin.devtools",)),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def imports_of(name: str) -> set[str]:
    """The project modules `name` imports (`from tracking import crypto` is tracking.crypto)."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules() else base)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def layer_of(name: str) -> int:
    if name in PACKAGES:
        return 0  # the packages' own __init__ files
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            names_it = name == prefix or name.startswith(prefix + ".")
            if names_it and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    if best is None:
        raise AssertionError(f"{name} has no layer: give it one in LAYERS (tests/test_layering.py)")
    return best[1]


def offending(importer_prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    """`importer imports imported` for each module under importer_prefix importing a forbidden prefix
    (a project module, or a third-party one such as django.db)."""
    out = []
    for name, path in modules().items():
        if name == importer_prefix or name.startswith(importer_prefix + "."):
            tree = ast.parse(path.read_text(), str(path))
            seen = imports_of(name) | _external_imports(tree)
            out += [
                f"{name} imports {m}"
                for m in sorted(seen)
                if any(m == f or m.startswith(f + ".") for f in forbidden)
            ]
    return out


def _external_imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for name in modules():
        mine = layer_of(name)
        for imported in sorted(imports_of(name)):
            theirs = layer_of(imported)
            if theirs > mine:
                upward.append(f"{name} ({LAYERS[mine][0]}) imports {imported} ({LAYERS[theirs][0]})")
    assert upward == []


def test_the_decision_engine_imports_no_models_sources_jobs_web_or_network():
    forbidden = (
        "django.db",
        "tracking.models",
        "tracking.sources",
        "tracking.context",
        "tracking.actions",
        "tracking.jobs",
        "syncadmin.web",
        "requests",
        "exchangelib",
        "msal",
        "redis",
        "rq",
        "django_rq",
    )
    assert offending("tracking.decisions", forbidden) == []


def test_sources_know_nothing_of_models_pipeline_actions_jobs_or_web():
    forbidden = (
        "django.db",
        "tracking.models",
        "tracking.context",
        "tracking.pipeline",
        "tracking.actions",
        "tracking.scanning",
        "tracking.jobs",
        "syncadmin.web",
    )
    assert offending("tracking.sources", forbidden) == []


def test_the_product_never_imports_the_web_layer_or_the_dev_tools():
    assert offending("tracking", ("syncadmin.web", "syncadmin.devtools")) == []


def test_the_checker_sees_function_level_and_aliased_imports():
    # A guard on the checker itself: these are imports it must resolve for the tests above to mean anything.
    assert "tracking.crypto" in imports_of("tracking.models.mailboxes")  # `from tracking import crypto`
    assert "tracking.pipeline" in imports_of("tracking.scanning")
    assert "tracking.messages" in imports_of("tracking.sources.local")


SOURCE_MODULES = sorted(name for name in modules() if name.startswith("tracking.sources."))


@pytest.mark.parametrize("module", [*SOURCE_MODULES, "tracking.messages", "tracking.decisions"])
def test_module_imports_without_django_set_up(module):
    """A fresh interpreter with no DJANGO_SETTINGS_MODULE imports it, and loads no models or pipeline."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    probe = (
        f"import sys, {module}\n"
        "above = ('tracking.models', 'tracking.context', 'tracking.actions', 'tracking.pipeline')\n"
        "print(sorted(m for m in sys.modules if m.startswith(above)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
