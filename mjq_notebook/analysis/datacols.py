"""Job ``data`` as ``data.<field>`` columns, built a chunk of documents at a time.

``history`` decodes its raw batches a few thousand documents at a time; ``Pieces.add`` turns
each chunk's ``data`` values into typed columns at once (nested documents flattened, lists
kept as objects), so the decoded documents are dropped before the next chunk: memory holds
the columns, never every job's documents. ``Pieces.columns`` then joins each field's pieces
into one column, with the dtype the whole column would have had if built at once (pandas
infers per chunk; a field typed alike in every chunk keeps that type, one missing somewhere
becomes what pandas makes of a missing value, mixed types are inferred again together).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

Path = tuple[str, ...]


@dataclass
class Pieces:
    """The ``data`` columns of many chunks of rows: per field path, (first row, values)."""

    rows: int = 0  # rows added so far, over every chunk
    pieces: dict[Path, list[tuple[int, pd.Series]]] = field(default_factory=dict)
    parents: set[Path] = field(default_factory=set)  # paths that held a document somewhere

    def add(self, values: Sequence[Any]) -> None:
        """The next chunk: one ``data`` value per row (NaN where a job has none)."""
        series = pd.Series(values, dtype=None if len(values) else object)
        for path, column in _leaves(series, ("data",), self.parents, top=True):
            self.pieces.setdefault(path, []).append((self.rows, column))
        self.rows += len(values)

    def columns(self, kept: pd.Index, order: pd.Index) -> pd.DataFrame:
        """The columns over the rows ``kept`` (positions in the order added), typed as if
        built from those rows at once, then in the row order ``order`` (of ``kept``); a
        field's pieces are let go as soon as its column is made."""
        built: dict[str, pd.Series] = {}
        for path in self._ordered():
            column = self._column(self.pieces.pop(path), path in self.parents, kept)
            if column is not None:
                built[".".join(path)] = column.reindex(order).reset_index(drop=True)
        self.pieces.clear()
        if not built:
            return pd.DataFrame(index=pd.RangeIndex(len(order)))
        return pd.DataFrame(built, copy=False)

    def _ordered(self) -> list[Path]:
        """Each field's path once, a document's own values before its fields, in the order
        the fields first appeared."""
        tree: dict[str, Any] = {}
        for path in self.pieces:
            node = tree
            for name in path:
                node = node.setdefault(name, {})
            node[""] = path  # "" never names a field here: it marks a column of this path
        out: list[Path] = []

        def walk(node: dict[str, Any]) -> None:
            if "" in node:
                out.append(node[""])
            for name, child in node.items():
                if name != "":
                    walk(child)

        walk(tree)
        return out

    def _column(
        self, pieces: list[tuple[int, pd.Series]], parent: bool, kept: pd.Index
    ) -> pd.Series | None:
        if parent:  # values beside documents: an object column (the documents are columns)
            column = _joined([piece.astype(object) for _, piece in pieces], pieces)
            column = column.reindex(kept)
            return None if column.isna().all() else column
        if len({str(piece.dtype) for _, piece in pieces}) == 1:
            return _joined([piece for _, piece in pieces], pieces).reindex(kept)
        mixed = _joined([piece.astype(object) for _, piece in pieces], pieces).reindex(kept)
        return pd.Series(mixed.tolist(), index=kept)  # inferred again, as one column


def _joined(values: list[pd.Series], pieces: list[tuple[int, pd.Series]]) -> pd.Series:
    """The pieces as one column, indexed by row position over every chunk."""
    index = np.concatenate([np.arange(first, first + len(p)) for first, p in pieces])
    column = values[0] if len(values) == 1 else pd.concat(values, ignore_index=True)
    return column.set_axis(pd.Index(index))


def _leaves(
    values: pd.Series, path: Path, parents: set[Path], top: bool = False
) -> list[tuple[Path, pd.Series]]:
    """``values`` as (path, column) pairs: nested documents flattened, lists kept as objects.
    A path holding documents is noted in ``parents``; its other values (pymjq allowed any
    data) are its own column."""
    is_document = np.fromiter((type(v) is dict for v in values), bool, len(values))
    if not is_document.any():
        return [(path, values)] if not top or values.notna().any() else []
    parents.add(path)
    out = []
    if (~is_document & values.notna().to_numpy()).any():
        out.append((path, values.where(~is_document)))
    documents = values[is_document]
    table = pd.DataFrame(documents.tolist(), index=documents.index).reindex(values.index)
    for name in table.columns:
        column = table[name]
        if column.dtype == object and any(type(v) is dict for v in column):
            out.extend(_leaves(column, (*path, str(name)), parents))
        else:
            out.append(((*path, str(name)), column))
    return out
