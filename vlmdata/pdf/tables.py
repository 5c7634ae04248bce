"""Tables recovered from a page's text layout: words that line up in rows and columns of numbers.

No model: words are grouped into visual rows by their vertical centre; a table is a run of at least
`MIN_ROWS` consecutive rows in which most words are numbers and which share column positions. Its
columns are clusters of word centres over those rows, and its header is the (up to two) rows just
above (while their words sit over the columns), each header word assigned to the column under it. A
cell is recoverable when it holds exactly the words of one column in one row. A label cell merged over
two rows (set once, vertically centred between them) shows up as a row of label cells only; it is
given to the rows just above and below it, so every data row has its full label. What is found is returned in [0, 1] page coordinates, for boxes drawn on the page and for
questions whose answers are the cells' text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

NUMBER = re.compile(r"^[-+±(]?\$?\d[\d.,]*%?\)?$")
MIN_ROWS = 3
COLUMN_GAP = 0.02  # of the page width: word centres further apart than this start a new column


@dataclass
class Cell:
    text: str
    box: list[float]


@dataclass
class Table:
    header: list[str]              # per column, '' where no header word sits above it
    rows: list[list[Cell | None]]  # per data row, per column
    box: list[float]


def _centre(box: list[float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _union(boxes: list[list[float]]) -> list[float]:
    return [round(min(b[0] for b in boxes), 4), round(min(b[1] for b in boxes), 4),
            round(max(b[2] for b in boxes), 4), round(max(b[3] for b in boxes), 4)]


def visual_rows(words: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Words grouped by vertical centre (top to bottom), each row left to right."""
    if not words:
        return []
    heights = sorted(w["box"][3] - w["box"][1] for w in words)
    tol = max(1e-3, heights[len(heights) // 2] * 0.5)
    rows: list[list[dict[str, Any]]] = []
    for w in sorted(words, key=lambda w: _centre(w["box"])[1]):
        cy = _centre(w["box"])[1]
        if rows and abs(cy - _centre(rows[-1][-1]["box"])[1]) <= tol:
            rows[-1].append(w)
        else:
            rows.append([w])
    return [sorted(r, key=lambda w: w["box"][0]) for r in rows]


def _is_data(row: list[dict[str, Any]]) -> bool:
    nums = sum(1 for w in row if NUMBER.match(w["text"]))
    return len(row) >= 2 and nums >= max(2, len(row) / 2)


def _columns(rows: list[list[dict[str, Any]]]) -> list[float]:
    xs = sorted(_centre(w["box"])[0] for r in rows for w in r)
    cols: list[list[float]] = []
    for x in xs:
        if cols and x - cols[-1][-1] <= COLUMN_GAP:
            cols[-1].append(x)
        else:
            cols.append([x])
    return [sum(c) / len(c) for c in cols]


def _assign(row: list[dict[str, Any]], centres: list[float]) -> list[list[dict[str, Any]]]:
    cells: list[list[dict[str, Any]]] = [[] for _ in centres]
    for w in row:
        x = _centre(w["box"])[0]
        k = min(range(len(centres)), key=lambda i: abs(centres[i] - x))
        if abs(centres[k] - x) <= 2 * COLUMN_GAP:
            cells[k].append(w)
    return cells


def find_tables(words: list[dict[str, Any]]) -> list[Table]:
    """Every table of a page (see the module docstring); [] when the layout shows none."""
    rows = visual_rows(words)
    tables = []
    i = 0
    while i < len(rows):
        if not _is_data(rows[i]):
            i += 1
            continue
        j = i
        while j + 1 < len(rows) and _is_data(rows[j + 1]):
            j += 1
        if j - i + 1 >= MIN_ROWS:
            tables.append(_table(rows, i, j))
        i = j + 1
    return [t for t in tables if t is not None]


def _table(rows: list[list[dict[str, Any]]], first: int, last: int) -> Table | None:
    data = rows[first:last + 1]
    centres = _columns(data)
    if len(centres) < 2:
        return None
    header_rows = []
    k = first - 1
    while k >= 0 and len(header_rows) < 3 and len(rows[k]) <= len(centres):
        cells = _assign(rows[k], centres)
        if sum(len(c) for c in cells) != len(rows[k]):  # a word off the columns: running text, not a header
            break
        header_rows.insert(0, cells)
        k -= 1
    header = [" ".join(w["text"] for cells in header_rows for w in cells[c]) for c in range(len(centres))]
    grid: list[list[Cell | None]] = [
        [Cell(text=" ".join(w["text"] for w in cell), box=_union([w["box"] for w in cell])) if cell else None
         for cell in _assign(r, centres)] for r in data]
    table = Table(header=header, rows=grid, box=_union([w["box"] for r in data for w in r]))
    return _fill_merged(table)


def _fill_merged(table: Table) -> Table:
    """Give a row of label cells only (a merged cell) to the rows above and below it, then drop it."""
    start = first_numeric_column(table)
    if start == 0:
        return table
    keep: list[list[Cell | None]] = []
    rows = table.rows
    for i, row in enumerate(rows):
        if all(c is None for c in row[start:]) and any(c is not None for c in row[:start]):
            for j in (i - 1, i + 1):
                if 0 <= j < len(rows) and any(c is not None for c in rows[j][start:]):
                    for k in range(start):
                        if rows[j][k] is None and row[k] is not None:
                            rows[j][k] = row[k]
            continue
        keep.append(row)
    table.rows = keep
    return table


def row_key(row: list[Cell | None], numeric_from: int) -> str | None:
    """The text of a row's label cells (the columns before the first numeric column); None if any is empty."""
    label = row[:numeric_from]
    if not label or any(c is None for c in label):
        return None
    return " ".join(c.text for c in label if c is not None)


def first_numeric_column(table: Table) -> int:
    """The first column whose filled cells are all numbers (the label columns come before it)."""
    for k in range(len(table.header)):
        cells = [r[k] for r in table.rows if r[k] is not None]
        if cells and all(NUMBER.match(c.text) for c in cells) and any("." in c.text for c in cells):
            return k
    return 0


def to_json(table: Table) -> dict[str, Any]:
    return {"header": table.header, "box": table.box,
            "rows": [[c.text if c else None for c in r] for r in table.rows]}


def lookups(table: Table, *, n: int) -> list[tuple[str, Cell, list[str]]]:
    """Up to `n` (question, cell, header words it quotes) whose row and column the layout names uniquely.

    A row is named by its label cells (the columns before the numbers), a column by its header; rows or
    columns whose name is empty or repeated are left out, so every question has one answer."""
    start = first_numeric_column(table)
    keys = [row_key(r, start) for r in table.rows]
    rows = [i for i, k in enumerate(keys) if k and keys.count(k) == 1]
    cols = [c for c in range(start, len(table.header)) if table.header[c] and table.header.count(table.header[c]) == 1]
    out: list[tuple[str, Cell, list[str]]] = []
    for k in range(min(n, len(rows) * len(cols))):
        i, c = rows[(k * 5 + 1) % len(rows)], cols[(k * 3 + 1) % len(cols)]
        cell = table.rows[i][c]
        if cell is None:
            continue
        labels = [table.rows[i][j] for j in range(start)]
        names = [table.header[j] for j in range(start)]
        if all(names) and all(labels):
            where = ", ".join(f"{nm} is {lb.text}" for nm, lb in zip(names, labels, strict=True) if lb)
            quotes = [*table.header[c].split(), *(w for nm in names for w in nm.split())]
        else:
            where = f"the row \"{keys[i]}\""
            quotes = table.header[c].split()
        out.append((f"In the table, what is the \"{table.header[c]}\" value where {where}?", cell, quotes))
    return out
