"""The house as the README's map draws it: no folder-level import cycle, a pure core, modules of a
readable size, and a map whose every path exists."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "payment_events"
MAX_LINES = 400
LONG_MODULE_REASON = "longer than the house's 400 lines"


def _imports(path: Path) -> Iterator[str]:
    """Every ``payment_events`` module a file imports, at the top or lazily inside a function."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            if node.module == "payment_events":
                yield from (f"payment_events.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _unit(parts: tuple[str, ...]) -> str:
    """The folder (or top-level module) a path inside the package belongs to."""
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _folder_edges() -> dict[str, dict[str, set[str]]]:
    edges: dict[str, dict[str, set[str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = _unit(path.relative_to(PACKAGE).parts)
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] != "payment_events" or len(parts) < 2 or parts[1] == source:
                continue
            edges.setdefault(source, {}).setdefault(parts[1], set()).add(str(path.relative_to(PACKAGE)))
    return edges


def test_no_two_folders_import_each_other() -> None:
    """Data flows one way: no folder (or top-level module) imports one that imports it back, not even
    through a lazy import inside a function."""
    edges = _folder_edges()
    cycles = [
        f"{a} <-> {b} ({sorted(edges[a][b])[0]} / {sorted(edges[b][a])[0]})"
        for a in edges
        for b in edges[a]
        if a < b and a in edges.get(b, {})
    ]
    assert cycles == []


def test_the_checker_sees_a_lazy_import_cycle(tmp_path: Path) -> None:
    """The cycle check reads imports inside functions too (a check that cannot fail is no check)."""
    code = "def f():\n    from payment_events.kafka.producer import KafkaBatchProducer\n"
    (tmp_path / "m.py").write_text(code)
    assert list(_imports(tmp_path / "m.py")) == ["payment_events.kafka.producer"]


@pytest.mark.parametrize(
    "module",
    [
        *sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "events").glob("*.py")),
        "relay/decisions.py",
        "relay/delivery.py",
        "kafka/topics.py",
        "outbox/ports.py",
        "testing/__init__.py",
        "testing/outbox.py",
        "testing/relay.py",
    ],
)
def test_the_pure_core_imports_no_database_or_kafka_client(module: str) -> None:
    """The contract, the relay's decisions, the routing rules, the ports and the fakes import neither
    SQLAlchemy nor a driver nor confluent_kafka."""
    heavy = {"sqlalchemy", "psycopg", "confluent_kafka", "alembic"}
    imported = {m.split(".")[0] for m in _imports(PACKAGE / module)}
    assert imported & heavy == set()


def test_modules_stay_readable_or_say_why_not() -> None:
    """No module over 400 lines without a stated reason in its docstring."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if text.count("\n") > MAX_LINES and LONG_MODULE_REASON not in docstring.replace("\n", " "):
            long.append(str(path.relative_to(PACKAGE)))
    assert long == []


def test_every_path_in_the_readme_map_exists() -> None:
    """The README's map of the code names real folders and modules."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Map of the code", 1)[1].split("\n## ", 1)[0]
    named, missing = 0, []
    for row in re.findall(r"^\| `(src/payment_events/[^`]*)` \| (.*) \|$", section, flags=re.MULTILINE):
        folder, text = row
        base = ROOT / folder
        assert base.exists(), folder
        for name in re.findall(r"`([a-z_]+)`", text) if base.is_dir() else []:
            if (base / f"{name}.py").exists() or (base / name).is_dir():
                named += 1
            else:
                missing.append(f"{folder}{name}")
    assert missing == []
    assert named >= 30
