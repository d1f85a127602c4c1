"""One kind of registry for everything the study looks up by name (compression methods, int8 routes).

A :class:`Registry` is a dict that refuses a second entry under one name and answers an unknown
name with one error listing the known ones. Each family keeps what it needs to run an entry on the
entry itself, so there are no side tables to keep in step.
"""
from __future__ import annotations

from typing import Generic, TypeVar

Entry = TypeVar("Entry")


class Registry(dict, Generic[Entry]):
    """Named entries of one ``kind`` (e.g. "compression method"), each registered once."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str, entry: Entry) -> Entry:
        """Add ``entry`` under ``name``; a name may be registered once."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self[name] = entry
        return entry

    def lookup(self, name: str) -> Entry:
        """The entry called ``name``; a clear error listing the known names otherwise."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of {list(self)}")
        return self[name]
