"""Walking an event for card data and secrets: its validated fields, or the raw input that failed
validation (so the error names the field and never echoes the value). The checks themselves are
:mod:`payment_events.events.privacy`'s."""

from __future__ import annotations

from types import UnionType
from typing import Literal, Union, get_args, get_origin

from pydantic import BaseModel

from payment_events.events.privacy import check_text, might_be_sensitive


def scan_raw(path: str, data: object, model: type[BaseModel] | None) -> None:
    """Refuse card data or secrets in any string (or key) of raw input, naming the field by wire name."""
    if isinstance(data, str):
        if might_be_sensitive(data):
            check_text(path.rstrip(".") or "(event)", data)
    elif isinstance(data, dict):
        fields = model.model_fields if model is not None else {}
        for key, value in data.items():
            name = str(key)
            if might_be_sensitive(name):
                check_text("(a field name)", name)
            info = fields.get(name)
            wire_name = (info.alias or name) if info is not None else name
            nested = _model_in(info.annotation) if info is not None else None
            scan_raw(f"{path}{wire_name}.", value, nested)
    elif isinstance(data, BaseModel):
        scan_raw(path, data.__dict__, type(data))
    elif isinstance(data, list | tuple):
        for index, item in enumerate(data):
            scan_raw(f"{path}{index}.", item, None)


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _is_closed_choice(annotation: object) -> bool:
    """Whether every value a field accepts is a fixed literal (nothing free-form to scan)."""
    if get_origin(annotation) is Literal:
        return True
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    return bool(args) and get_origin(annotation) in (Union, UnionType) and all(map(_is_closed_choice, args))


_scan_plans: dict[type[BaseModel], tuple[tuple[str, str], ...]] = {}


_FORMAT_CHECKED = frozenset({"traceparent"})
"""String fields whose validator admits only a fixed machine format, so they carry no free text to scan.
The W3C traceparent is ``00-<32 hex>-<16 hex>-<2 hex>``: a random 16-hex span id is all digits about
once in 1,800 and then passes Luhn and a card brand's range about once in 30, so scanning it would refuse
about one payment in 60,000 for its tracing header."""


def _scan_plan(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(python name, wire name) of the fields of ``model`` that may hold free-form strings or models."""
    plan = _scan_plans.get(model)
    if plan is None:
        plan = tuple(
            (name, info.alias or name)
            for name, info in model.model_fields.items()
            if not _is_closed_choice(info.annotation) and name not in _FORMAT_CHECKED
        )
        _scan_plans[model] = plan
    return plan


def scan_fields(path: str, model: BaseModel) -> None:
    """Refuse card data or secrets in any free-form string field of a validated ``model``."""
    values = model.__dict__
    for name, wire_name in _scan_plan(type(model)):
        value = values[name]
        if isinstance(value, str):
            if might_be_sensitive(value):
                check_text(path + wire_name, value)
        elif isinstance(value, BaseModel):
            scan_fields(f"{path}{wire_name}.", value)
