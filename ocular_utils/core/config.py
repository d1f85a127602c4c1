"""Typed settings: every profile section is a dataclass that holds the one copy of its defaults.

A section is built from a plain dict (a YAML profile, a papermill parameter) with
:meth:`Settings.from_dict`, which rejects unknown keys by name and merges nested sections into
their own defaults; :meth:`Settings.to_dict` gives the plain dict back (what notebooks receive).
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T", bound="Settings")


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


class Settings:
    """Mixin for the settings dataclasses: strict construction from dicts, plain dicts back."""

    @classmethod
    def from_dict(cls: type[T], values: dict | None, where: str | None = None) -> T:
        """Build from a dict: unknown keys are an error naming the known ones; nested sections merge into defaults."""
        values = dict(values or {})
        where = where or cls.__name__
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"{where} has unknown keys {unknown}; known: {sorted(known)}")
        for name, value in values.items():
            default = _default_of(known[name])
            if isinstance(default, Settings) and isinstance(value, dict):
                values[name] = type(default).from_dict(default.to_dict() | value, f"{where}.{name}")
        return cls(**values)

    def to_dict(self) -> dict:
        """The settings as a plain, JSON-ready dict (nested sections included)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]
