"""Every CSV we produce is written here, so that no cell runs as a formula when a spreadsheet
opens the file (CSV injection, after OWASP's advice)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

# A spreadsheet reads a cell starting with one of these as a formula (tab and CR: as the start of
# one after them).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    """The cell as text, with a single quote in front when it would start a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


class _Line:
    """A file-like object for csv.writer that hands back what was written."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Iterable[object], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """The CSV, line by line (for a StreamingHttpResponse), every cell neutralised."""
    writer = csv.writer(_Line())
    yield writer.writerow([neutralise(cell) for cell in header])
    for row in rows:
        yield writer.writerow([neutralise(cell) for cell in row])
