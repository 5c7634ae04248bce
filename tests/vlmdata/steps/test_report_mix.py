"""The HTML report's task-mix table shows the mix stage's numbers (n_i, p_i, final rows) for a real build."""

from __future__ import annotations

import json
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

from test_split_mix import _write_tiny_dataset


class _Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[dict[str, str | None], list[list[str]]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append((dict(attrs), []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _mix_section(html: str) -> str:
    start = html.index("<h2 id='mix'>")
    return html[start:html.index("<h2", start + 5)]


def test_report_shows_the_mix_table_with_the_builds_numbers(tmp_path: Path) -> None:
    import datasets

    from vlmdata.build import build
    from vlmdata.output.report.html import write_report
    from vlmdata.recipe import load_recipe

    _write_tiny_dataset(tmp_path)
    result = build(load_recipe(tmp_path / "recipe.yaml"), out=tmp_path / "out", progress=False)
    write_report(result.path)
    section = _mix_section((result.path / "report.html").read_text(encoding="utf-8"))
    assert "No mix stage ran" not in section
    parser = _Tables()
    parser.feed(section)
    (attrs, rows), = parser.tables
    assert rows[0][0] == "task" and rows[0][3].startswith("p")
    table = {r[0]: r[1:] for r in rows[1:]}

    train = Counter(datasets.load_from_disk(str(result.path))["train"]["task"])
    manifest = json.loads((result.path / "manifest.json").read_text())
    split_train = next(s for s in manifest["stages"] if s["stage"] == "mix")["in"]
    assert set(table) == set(train) == {"vqa", "count"}
    assert sum(int(v[0]) for v in table.values()) <= split_train  # n_i counts train rows only
    for task, (n, n_capped, _p, final, dropped, repeated) in table.items():
        assert int(final) == train[task]  # the final rows are what the dataset holds
        assert int(n) == int(n_capped)  # no caps in this recipe
        assert int(dropped) == max(0, int(n) - train[task]) and int(repeated) == max(0, train[task] - int(n))
    assert sum(int(v[3]) for v in table.values()) == 150  # mix.total
    assert abs(sum(float(v[2]) for v in table.values()) - 1.0) < 1e-3
    # temperature 2 flattens the shares: the smaller task gets more than its natural share
    small = min(table, key=lambda t: int(table[t][0]))
    natural = int(table[small][0]) / sum(int(v[0]) for v in table.values())
    assert float(table[small][2]) > natural
    assert "Temperature 2.0" in section and "ghost" in section  # the note on a weight without rows
