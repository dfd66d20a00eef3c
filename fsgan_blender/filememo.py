"""Answers about files, remembered until the file changes (standard library only, no bpy)."""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any


class FileMemo:
    """``memo.get(key, path, compute)``: ``compute(stat)`` the first time, then the same answer
    while ``path`` keeps its size and modification time. Panels draw many times a second and
    decodes check the same files chunk after chunk: this keeps both to one ``stat`` a file."""

    def __init__(self, limit: int):
        self.limit = limit
        self._memo: dict[Hashable, tuple[tuple[int, int], Any]] = {}

    def get(self, key: Hashable, path: str, compute: Callable[[os.stat_result], Any]) -> Any:
        """Raises OSError when ``path`` can't be stat'ed (missing)."""
        st = os.stat(path)
        version = (st.st_size, st.st_mtime_ns)
        hit = self._memo.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        value = compute(st)
        if len(self._memo) >= self.limit:
            self._memo.clear()
        self._memo[key] = (version, value)
        return value
