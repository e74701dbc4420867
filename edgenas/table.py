"""Tabular evaluation: results looked up in a table instead of training (NAS-Bench style).

A table is a CSV file with one row per architecture: a column of architecture strings (in the
space's own notation, e.g. NB201's `|op~0|+|op~0|op~1|+...`) and numeric metric columns. A search
with a table uses a validation column for the reward and keeps a test column for the report only;
it is how controllers are compared where the truth is known (Arora & Krone's precomputed-reward
mode). Accuracies given in percent (any value above 1) are divided by 100.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenas.errors import DataError
from edgenas.spaces.base import SearchSpace


def arch_text(space: SearchSpace, arch: Any) -> str:
    """The string a table row names `arch` by."""
    return str(arch)


def _parse(space: SearchSpace, text: str) -> str | None:
    """The normalised string of a table entry, or None if it is not an architecture of `space`."""
    parse = getattr(space, "parse", None)
    if parse is None:
        return text.strip() or None
    try:
        return str(parse(text))
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class Table:
    path: Path
    arch_column: str
    val_column: str
    test_column: str | None
    rows: dict[str, dict[str, float]]  # normalised arch string -> metric columns
    percent: dict[str, bool]

    @classmethod
    def load(
        cls,
        path: str | Path,
        space: SearchSpace,
        val_column: str | None = None,
        test_column: str | None = None,
        arch_column: str | None = None,
    ) -> "Table":
        path = Path(path)
        try:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                raw = list(reader)
        except FileNotFoundError:
            raise DataError(
                f"table file {path} does not exist; give a CSV of architecture strings and metrics"
            ) from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"table file {path} cannot be read as CSV ({exc})") from exc
        if not raw:
            raise DataError(f"table file {path} has no rows")
        if arch_column is None:
            arch_column = next(
                (c for c in header if _parse(space, raw[0][c] or "") is not None and getattr(space, "parse", None)),
                None,
            )
            if arch_column is None:
                raise DataError(
                    f"no column of {path} holds '{space.name}' architecture strings (columns: {', '.join(header)}); "
                    "name it with --table-arch-column"
                )
        for name, what in ((arch_column, "architecture"), (val_column, "validation"), (test_column, "test")):
            if name is not None and name not in header:
                raise DataError(f"table {path} has no {what} column '{name}'; its columns are: {', '.join(header)}")
        if val_column is None:
            val_column = next((c for c in header if c.endswith("val")), None)
            if val_column is None:
                raise DataError(
                    f"table {path} has no column ending in 'val'; name the validation metric with --table-metric"
                )
        if test_column is None:
            guess = val_column[: -len("val")] + "test"
            test_column = guess if guess in header else None
        rows: dict[str, dict[str, float]] = {}
        metrics = [c for c in (val_column, test_column) if c]
        for n, row in enumerate(raw, start=2):
            key = _parse(space, row[arch_column] or "")
            if key is None:
                raise DataError(f"{path} line {n}: '{row[arch_column]}' is not a '{space.name}' architecture")
            try:
                rows[key] = {c: float(row[c]) for c in metrics}
            except (TypeError, ValueError):
                raise DataError(f"{path} line {n}: {', '.join(metrics)} must be numbers") from None
        percent = {c: max(r[c] for r in rows.values()) > 1.0 for c in metrics}
        return cls(path, arch_column, val_column, test_column, rows, percent)

    def lookup(self, space: SearchSpace, arch: Any) -> tuple[float, float | None]:
        """(validation accuracy, test accuracy or None) of `arch`, as fractions."""
        row = self.rows.get(arch_text(space, arch))
        if row is None:
            raise DataError(f"architecture {arch_text(space, arch)} is not in the table {self.path}")
        val = row[self.val_column] / (100.0 if self.percent[self.val_column] else 1.0)
        test = None
        if self.test_column:
            test = row[self.test_column] / (100.0 if self.percent[self.test_column] else 1.0)
        return val, test
