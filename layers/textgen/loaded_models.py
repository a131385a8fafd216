"""Models loaded in memory, kept across requests: bounded, least recently used out first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from textgen.timing import Stopwatch

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class LoadedModels(Generic[Key, Value]):
    """A bounded LRU cache whose misses load at most once per key, however many threads ask."""

    def __init__(
        self,
        loader: Callable[[Key], Value],
        capacity: int,
        on_evict: Callable[[Value], None] = lambda value: None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._loader = loader
        self._on_evict = on_evict
        self._capacity = capacity
        self._entries: OrderedDict[Key, Value] = OrderedDict()
        self._loading: dict[Key, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, key: Key) -> tuple[Value, float | None]:
        """The value and, if this call loaded it, the seconds the load took."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key], None
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._entries:  # another thread loaded it while we waited
                    self._entries.move_to_end(key)
                    return self._entries[key], None
            watch = Stopwatch()
            try:
                value = self._loader(key)
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            seconds = watch.elapsed()
            evicted = []
            with self._lock:
                # Publish and retire the key's lock together, so no thread starts a second load.
                self._entries[key] = value
                self._loading.pop(key, None)
                self.loads += 1
                while len(self._entries) > self._capacity:
                    evicted.append(self._entries.popitem(last=False)[1])
            for old in evicted:
                self._on_evict(old)
            return value, seconds

    def values(self) -> list[tuple[Key, Value]]:
        with self._lock:
            return list(self._entries.items())

    def loaded_keys(self) -> list[Key]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
