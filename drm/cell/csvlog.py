"""Append-only CSV logs that a resumed run can cut back to the rows its snapshot knew."""
import csv
import math
import os
from pathlib import Path


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _parsed(text: str):
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


class CsvLog:
    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns, self.rows = Path(path), list(columns), 0

    def truncate(self, rows: int) -> None:
        """Keep the header and the first `rows` rows (a fresh file when rows is 0)."""
        kept = []
        if rows and self.path.exists():
            with open(self.path, newline="") as f:
                kept = list(csv.reader(f))[1:rows + 1]
        if len(kept) != rows:
            raise RuntimeError(f"{self.path} has {len(kept)} rows, its snapshot expects {rows}")
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.columns)
            writer.writerows(kept)
        os.replace(tmp, self.path)
        self.rows = rows

    def read(self, first: int, stop: int) -> list[dict]:
        """Rows first..stop-1 as written (numbers as floats, an empty cell as None): what a
        resumption logs again to a logger that may have lost them."""
        if stop <= first or not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))[first:stop]
        return [{key: _parsed(value) for key, value in row.items()} for row in rows]

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_cell(row.get(c)) for c in self.columns])
        self.rows += 1
