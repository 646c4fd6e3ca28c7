"""JSON Schema artefacts for every event version, and the compatibility checker that guards evolution.

The pydantic models are the source; :func:`export_schemas` writes one JSON Schema (draft 2020-12) per
registered ``(eventType, schemaVersion)`` to ``<directory>/<EventType>/v<N>.json``. These files are
committed: they are what other teams read and validate against. A unit test fails when they differ from
the models (regenerate with ``payment-events schemas export``).

:func:`check_compatibility` compares two versions of one event and lists what would break consumers:
a removed field, a changed type (nullability included), a new required field, a narrowed enum, a changed
constant, a tightened limit (length, range), a changed pattern or format, a closed object. Adding an
optional field and widening an enum are allowed (consumers must ignore unknown fields and handle unknown
enum values). :func:`check_all` runs it over every pair of consecutive versions.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from payment_events.errors import SchemaCompatibilityError
from payment_events.events import BaseEvent
from payment_events.events.registry import DEFAULT_REGISTRY, EventRegistry, schema_uri

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "Incompatibility",
    "assert_compatible",
    "check_all",
    "check_compatibility",
    "event_schema",
    "export_schemas",
    "generate_schemas",
    "load_schemas",
    "render_schema",
    "schema_path",
    "stale_schema_files",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

SchemaKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One way a new schema version would break consumers of the previous one.

    ``schema`` names the pair compared (``"PaymentFailed v1 -> v2"``), ``path`` the field (dotted for
    nested objects, empty for the event itself), ``kind`` the rule broken, ``message`` the explanation.
    """

    schema: str
    path: str
    kind: str
    message: str

    def __str__(self) -> str:
        """``"<schema>: <message>"``, for people and CLI output."""
        return f"{self.schema}: {self.message}"


# ---------------------------------------------------------------------------------------------- export


def event_schema(model: type[BaseEvent]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one event model, with ``$schema``, ``$id`` and a title."""
    generated = model.model_json_schema(by_alias=True, mode="validation")
    key_field = model.model_fields[model.PARTITION_KEY_FIELD]
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_uri(model.EVENT_TYPE, model.SCHEMA_VERSION),
        **generated,
        "title": f"{model.EVENT_TYPE} v{model.SCHEMA_VERSION}",
        "x-partition-key": key_field.alias or model.PARTITION_KEY_FIELD,
    }


def generate_schemas(registry: EventRegistry | None = None) -> dict[SchemaKey, dict[str, Any]]:
    """The schema of every registered event version, keyed by ``(eventType, schemaVersion)``."""
    registry = registry or DEFAULT_REGISTRY
    return {(model.EVENT_TYPE, model.SCHEMA_VERSION): event_schema(model) for model in registry.models()}


def schema_path(directory: Path, event_type: str, schema_version: int) -> Path:
    """Where one schema version lives: ``<directory>/<EventType>/v<N>.json``."""
    return directory / event_type / f"v{schema_version}.json"


def render_schema(schema: dict[str, Any]) -> str:
    """The committed text of a schema: sorted keys, 2-space indent, UTF-8, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_schemas(directory: Path | str, registry: EventRegistry | None = None) -> list[Path]:
    """Write every registered event version's schema under ``directory``; return the paths written.

    Files of versions no longer registered are left alone (a published schema is never deleted by a
    tool); :func:`stale_schema_files` reports them.
    """
    root = Path(directory)
    written = []
    for (event_type, version), schema in sorted(generate_schemas(registry).items()):
        path = schema_path(root, event_type, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_schema(schema), encoding="utf-8")
        written.append(path)
    return written


def load_schemas(directory: Path | str) -> dict[SchemaKey, dict[str, Any]]:
    """Read the committed schemas under ``directory``, keyed by ``(eventType, schemaVersion)``."""
    schemas = {}
    for path in sorted(Path(directory).glob("*/v*.json")):
        version = path.stem[1:]
        if not version.isdigit():
            continue
        try:
            schemas[(path.parent.name, int(version))] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            msg = f"cannot read schema file {path}: {exc.__class__.__name__}"
            raise SchemaCompatibilityError(msg) from exc
    return schemas


def stale_schema_files(directory: Path | str, registry: EventRegistry | None = None) -> list[str]:
    """Differences between the committed files and the models, one sentence each; empty when in sync."""
    root = Path(directory)
    problems = []
    generated = generate_schemas(registry)
    for (event_type, version), schema in sorted(generated.items()):
        path = schema_path(root, event_type, version)
        if not path.exists():
            problems.append(f"{path} is missing")
        elif path.read_text(encoding="utf-8") != render_schema(schema):
            problems.append(f"{path} differs from the {event_type} v{version} model")
    for event_type, version in sorted(set(load_schemas(root)) - set(generated)):
        path = schema_path(root, event_type, version)
        problems.append(f"{path} has no registered model: a published version must stay registered")
    return problems


# --------------------------------------------------------------------------------------- compatibility

_TIGHTER_IF_SMALLER = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_TIGHTER_IF_LARGER = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")


class _Comparison:
    def __init__(self, old_root: dict[str, Any], new_root: dict[str, Any], label: str) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.label = label
        self.found: list[Incompatibility] = []

    def report(self, path: str, kind: str, message: str) -> None:
        self.found.append(Incompatibility(self.label, path, kind, message))

    @staticmethod
    def resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in node and seen < 32:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/"):
                break
            target: Any = root
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            seen += 1
        return node

    def branches(self, root: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
        node = self.resolve(root, node)
        for combinator in ("anyOf", "oneOf"):
            if combinator in node:
                result = []
                for branch in node[combinator]:
                    result.extend(self.branches(root, branch))
                return result
        return [node]

    @staticmethod
    def types_of(node: dict[str, Any]) -> set[str]:
        if "type" in node:
            kind = node["type"]
            return set(kind) if isinstance(kind, list) else {kind}
        values = [node["const"]] if "const" in node else list(node.get("enum", []))
        names = {"bool": "boolean", "int": "integer", "float": "number", "str": "string", "NoneType": "null"}
        found = {names.get(type(value).__name__, "object") for value in values}
        return found or {"any"}

    def compare(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        name = path or "(event)"
        old_branches = self.branches(self.old_root, old)
        new_branches = self.branches(self.new_root, new)
        old_types = set().union(*(self.types_of(b) for b in old_branches))
        new_types = set().union(*(self.types_of(b) for b in new_branches))
        if old_types != new_types and "any" not in new_types:
            self.report(
                path,
                "retyped",
                f"field {name!r} changed type from {'|'.join(sorted(old_types))} "
                f"to {'|'.join(sorted(new_types))}",
            )
            return
        old_main = [b for b in old_branches if self.types_of(b) != {"null"}]
        new_main = [b for b in new_branches if self.types_of(b) != {"null"}]
        if len(old_main) == 1 and len(new_main) == 1:
            self.compare_node(old_main[0], new_main[0], path)

    def compare_node(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        self.compare_values(old, new, path)
        self.compare_limits(old, new, path)
        if "object" in self.types_of(old) or "properties" in old:
            self.compare_object(old, new, path)
        if "items" in old and "items" in new:
            self.compare(old["items"], new["items"], f"{path}[]")

    def compare_values(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        name = path or "(event)"
        old_values = old.get("enum", [old["const"]] if "const" in old else None)
        new_values = new.get("enum", [new["const"]] if "const" in new else None)
        if path == "schemaVersion":
            pass  # bumping it is the point of a new version
        elif "enum" not in old and "enum" not in new and "const" in old:
            if new.get("const", old["const"]) != old["const"]:
                self.report(path, "const-changed", f"field {name!r} changed its constant value")
        elif old_values is not None and new_values is not None:
            removed = [value for value in old_values if value not in new_values]
            if removed:
                shown = ", ".join(repr(value) for value in removed)
                self.report(path, "enum-narrowed", f"field {name!r} no longer allows {shown}")
        elif old_values is None and new_values is not None:
            self.report(path, "enum-narrowed", f"field {name!r} is now restricted to a list of values")

    def compare_limits(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        name = path or "(event)"
        for keyword in _TIGHTER_IF_SMALLER:
            if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
                was = old.get(keyword, "none")
                message = f"field {name!r} {keyword} tightened from {was} to {new[keyword]}"
                self.report(path, "tightened", message)
        for keyword in _TIGHTER_IF_LARGER:
            if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
                was = old.get(keyword, "none")
                message = f"field {name!r} {keyword} tightened from {was} to {new[keyword]}"
                self.report(path, "tightened", message)
        for keyword in ("pattern", "format"):
            if keyword in new and new.get(keyword) != old.get(keyword):
                self.report(path, f"{keyword}-changed", f"field {name!r} has a different {keyword}")

    def compare_object(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        prefix = f"{path}." if path else ""
        old_props: dict[str, Any] = old.get("properties", {})
        new_props: dict[str, Any] = new.get("properties", {})
        old_required = set(old.get("required", []))
        new_required = set(new.get("required", []))
        for field in old_props:
            if field not in new_props:
                self.report(
                    prefix + field,
                    "removed",
                    f"field {prefix + field!r} was removed: consumers of the previous version read it",
                )
        for field in sorted(new_required - old_required):
            reason = "is new and required" if field not in old_props else "became required"
            self.report(
                prefix + field,
                "new-required",
                f"field {prefix + field!r} {reason}: events of the previous version do not always have it",
            )
        if old.get("additionalProperties", True) is not False and new.get("additionalProperties") is False:
            self.report(path, "closed", f"object {path or '(event)'!r} no longer allows additional fields")
        for field, old_field in old_props.items():
            if field in new_props:
                self.compare(old_field, new_props[field], prefix + field)


def check_compatibility(old_schema: dict[str, Any], new_schema: dict[str, Any]) -> list[Incompatibility]:
    """What in ``new_schema`` would break consumers of ``old_schema``; empty when compatible.

    Breaking: a removed field, a changed type (nullability included), a new required field (or one that
    became required), a narrowed enum or changed constant (``schemaVersion`` excepted), a tightened
    length/range limit, a changed pattern or format, an object closed to additional fields.
    """
    label = f"{old_schema.get('title', 'old')} -> {new_schema.get('title', 'new')}"
    comparison = _Comparison(old_schema, new_schema, label)
    comparison.compare(old_schema, new_schema, "")
    return comparison.found


def check_all(
    directory: Path | str | None = None, registry: EventRegistry | None = None
) -> list[Incompatibility]:
    """Check every pair of consecutive versions of every event type.

    Reads the committed files under ``directory`` when given, otherwise generates the schemas from the
    registry's models. Also reports gaps in version numbers and, from the registry, old versions without
    an upcaster to the next one.
    """
    registry = registry or DEFAULT_REGISTRY
    schemas = load_schemas(directory) if directory is not None else generate_schemas(registry)
    found: list[Incompatibility] = []
    for event_type in sorted({event_type for event_type, _ in schemas}):
        versions = sorted(version for name, version in schemas if name == event_type)
        if versions != list(range(1, len(versions) + 1)):
            shown = ", ".join(str(v) for v in versions)
            message = f"versions must be 1, 2, 3... without gaps; found {shown}"
            found.append(Incompatibility(event_type, "", "version-gap", message))
        for older, newer in itertools.pairwise(versions):
            found.extend(check_compatibility(schemas[(event_type, older)], schemas[(event_type, newer)]))
    for problem in registry.check():
        found.append(Incompatibility(problem.split(" ", 1)[0], "", "no-upcaster", problem))
    return found


def assert_compatible(directory: Path | str | None = None, registry: EventRegistry | None = None) -> None:
    """Raise :class:`SchemaCompatibilityError` listing every incompatibility :func:`check_all` finds."""
    found = check_all(directory, registry)
    if found:
        lines = "\n".join(f"  - {item}" for item in found)
        msg = f"{len(found)} incompatible schema change(s):\n{lines}"
        raise SchemaCompatibilityError(msg)
