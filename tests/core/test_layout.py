"""The package's layers import downwards only (docs/architecture.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "hubbub"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def _forbidden(package: str, banned: tuple[str, ...]) -> list[str]:
    bad = []
    for path in _modules(package):
        for name in _imports(path):
            if any(name == b or name.startswith(b + ".") for b in banned):
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    return bad


ENGINE_IMPLEMENTATIONS = (
    "hubbub.engine.memory",
    "hubbub.engine.distributed",
    "hubbub.engine.sql",
    "hubbub.engine.sqlite",
    "hubbub.engine.postgres",
    "hubbub.engine.redis",
)
ABOVE_ENGINE = ("hubbub.core", "hubbub.server", "hubbub.ops", "hubbub.client", "hubbub.tui")


@pytest.mark.parametrize(
    ("package", "banned"),
    [
        ("protocol", ("aiohttp", "hubbub.engine", "hubbub.core", "hubbub.server", "hubbub.ops")),
        ("core", ("aiohttp", *ENGINE_IMPLEMENTATIONS, "hubbub.server", "hubbub.ops")),
        ("engine", (*ABOVE_ENGINE, "aiohttp")),
        ("server", ("hubbub.ops",)),
        ("client", ("hubbub.server", "hubbub.core", "hubbub.engine", "hubbub.ops")),
        ("tui", ("hubbub.server", "hubbub.core", "hubbub.engine", "hubbub.ops")),
        ("bench", ("hubbub.server", "hubbub.core", "hubbub.engine", "hubbub.ops")),
    ],
)
def test_layer_imports_point_down(package: str, banned: tuple[str, ...]) -> None:
    assert _forbidden(package, banned) == []


def test_nothing_below_ops_imports_ops() -> None:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "ops" or rel.name == "__main__.py":
            continue
        bad += [f"{rel} imports {n}" for n in _imports(path) if n.startswith("hubbub.ops")]
    assert bad == []


def test_the_command_line_is_the_top_only_main_imports_it() -> None:
    """`ops/cli.py` dispatches to the commands; none of them reaches back into it."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.name == "__main__.py" or rel == Path("ops/cli.py"):
            continue
        bad += [f"{rel} imports {n}" for n in _imports(path) if n == "hubbub.ops.cli"]
    assert bad == []
