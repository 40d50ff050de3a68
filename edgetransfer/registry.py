"""A named registry: one place answers "what exists"; registering a name twice is a bug, an unknown name is the
user's mistake and lists the known ones."""

from __future__ import annotations

from typing import Generic, TypeVar

from edgetransfer.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Items by name, for one ``kind`` of thing ("backbone", "backend")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = self.closest(name)
            hint = f" (did you mean {close!r}?)" if close else ""
            raise UsageError(f"unknown {self.kind} {name!r}{hint}; known: {', '.join(self.names())}") from None

    def closest(self, name: str) -> str | None:
        """The known name ``name`` was likely meant as: the same but for case, '_' and '-' (mobilenetv2), or the
        nearest spelling (difflib)."""
        import difflib

        def bare(text: str) -> str:
            return text.lower().replace("_", "").replace("-", "")

        same = [known for known in self.names() if bare(known) == bare(name)]
        if same:
            return same[0]
        # a name given without its suffix: openvino -> openvino-cpu (difflib's nearest was ort-openvino)
        prefixed = [known for known in self.names() if bare(known).startswith(bare(name))] if len(name) >= 3 else []
        if prefixed:
            return next((known for known in prefixed if known.endswith("cpu")), prefixed[0])
        near = difflib.get_close_matches(name.lower(), self.names(), n=1, cutoff=0.75)
        return near[0] if near else None

    def names(self) -> list[str]:
        return sorted(self._items)

    def values(self) -> list[T]:
        return list(self._items.values())
