"""Imports point one way: config wires everything, workers use apps, and between apps each
imports only the apps below it (docs/architecture.md, "How the code depends on itself")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lowest first: an app may import itself and the apps before it.
LAYERS = ["core", "staff", "clients", "jobs", "webhooks", "schedules", "dashboard"]
# Upward imports that remain, each with its reason. None: the job store writes the webhook
# outbox row with the SQL the webhooks app registers (apps/jobs/store.py, use_outbox).
KNOWN_UPWARD: set[tuple[str, str]] = set()


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def app_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "apps" and len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for path in sorted((ROOT / "apps").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        importer = relative.split("/")[1]
        for module in imports(path):
            if module.split(".")[0] in {"workers", "config"}:
                found.add((relative, module))
            imported = app_of(module)
            if imported is not None and LAYERS.index(imported) > LAYERS.index(importer):
                found.add((relative, module))
    return found


def test_every_app_is_in_a_layer() -> None:
    apps = {p.name for p in (ROOT / "apps").iterdir() if (p / "apps.py").exists()}
    assert apps == set(LAYERS)


def test_apps_import_only_the_apps_below_them_and_never_workers_or_config() -> None:
    assert upward_imports() == KNOWN_UPWARD


def test_tests_share_helpers_through_tests_support_only() -> None:
    """A test module imports helpers from tests/support (or tests.factories), never from another
    test module or a conftest, so moving or deleting a test breaks no other."""
    shared = ("tests.support", "tests.factories", "tests.settings")
    found = set()
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for module in imports(path):
            if module.startswith("tests.") and not module.startswith(shared):
                found.add((path.relative_to(ROOT).as_posix(), module))
    assert found == set()
