"""Imported profile tables (CSV / Excel), kept per viewer: the Profiles dock puts them, the
Diffusion dock offers them."""

from __future__ import annotations

import pandas as pd
from psygnal import Signal

from ._layers import unwrap


class _ProfileStore:
    """Imported profile tables, per viewer: ``{name: long profiles table}``."""

    changed = Signal()

    def __init__(self) -> None:
        self._tables: dict[int, dict[str, pd.DataFrame]] = {}
        self._results: dict[int, dict[str, pd.DataFrame]] = {}

    def tables(self, viewer) -> dict[str, pd.DataFrame]:
        return self._tables.setdefault(id(unwrap(viewer)), {})

    def results(self, viewer) -> dict[str, pd.DataFrame]:
        """Fit results (e.g. diffusion) of the imported tables, by table name."""
        return self._results.setdefault(id(unwrap(viewer)), {})

    def put(self, viewer, name: str, prof: pd.DataFrame) -> None:
        self.tables(viewer)[name] = prof
        self.changed.emit()

    def forget(self, viewer) -> None:
        self._tables.pop(id(unwrap(viewer)), None)
        self._results.pop(id(unwrap(viewer)), None)


profile_store = _ProfileStore()
