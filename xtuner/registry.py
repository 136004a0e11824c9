"""A tiny name -> object registry: duplicate names fail loudly, unknown names list the valid ones."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from xtuner.errors import XtunerError, unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(
        self, kind: str, *, package: str | None = None, path: Iterable[str] = (), group: str | None = None,
        skip: Iterable[str] = (),
    ) -> None:  # fmt: skip
        """`package`/`path`: modules there register their items when imported; they are imported on first use
        (skipping private `_x` modules and `skip`). `group`: an entry-point group for items from other packages."""
        self.kind = kind
        self._items: dict[str, T] = {}
        self._package, self._path, self._group, self._skip = package, list(path), group, set(skip)
        self._discovered = package is None and group is None

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        if self._package:
            for mod in pkgutil.iter_modules(self._path):
                if mod.name not in self._skip and not mod.name.startswith("_"):
                    importlib.import_module(f"{self._package}.{mod.name}")
        if self._group:
            for ep in entry_points(group=self._group):
                ep.load()

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise XtunerError(f"duplicate {self.kind} registration: {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        self._discover()
        try:
            return self._items[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._items) from None

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
