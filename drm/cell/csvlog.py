"""Append-only CSV logs that a resumed run can cut back to the rows its snapshot knew."""
import csv
import math
import os
from pathlib import Path


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


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

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_cell(row.get(c)) for c in self.columns])
        self.rows += 1
