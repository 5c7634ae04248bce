"""The pdf source on the real example PDFs: answers are checked against the text layer read here
independently (pypdfium2's own text extraction), and bad PDFs become rejects with their reason."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from vlmdata_kit import Built, Workspace, decode, text_of

from vlmdata.build import build
from vlmdata.pdf.questions import grounded, pick_lines
from vlmdata.recipe import load_recipe

pdfium = pytest.importorskip("pypdfium2")  # the [pdf] extra; the dev extra installs it

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "examples/documents"


@pytest.fixture(scope="module")
def doc(module_ws: Workspace) -> Built:
    result = build(load_recipe(ROOT / "recipes/document.yaml"), out=module_ws.root / "document", progress=False)
    return Built(path=result.path, manifest=result.manifest)


def all_rows(built: Built) -> list[dict]:
    import datasets

    return [r for split in datasets.load_from_disk(str(built.path)) for r in built.split_rows(split)]


def page_text(name: str, page: int) -> str:
    pdf = pdfium.PdfDocument(DOCS / name)
    return re.sub(r"\s+", " ", pdf[page - 1].get_textpage().get_text_range())


def test_every_answer_is_text_of_its_page(doc: Built) -> None:
    rows = all_rows(doc)
    assert len(rows) > 10
    for row in rows:
        meta = row["meta"]
        pages = meta.get("pages") or [meta["page"]]
        texts = {p: page_text(meta["scene"], p) for p in pages}
        answers = [text_of(m) for m in row["messages"] if m["role"] == "assistant"]
        for q, a in zip([text_of(m) for m in row["messages"] if m["role"] == "user"], answers, strict=True):
            if q.startswith("On which page"):
                heading = re.search(r'"(.+)"', q).group(1)
                page = int(re.fullmatch(r"Page (\d+)\.", a).group(1))
                assert [p for p, t in texts.items() if heading in t] == [page]
            else:
                quotes = re.findall(r'"([^"]+)"', a) if a.startswith("The ") and '"' in a else [a]
                for quote in quotes:
                    assert quote in texts[meta["page"]], (quote, meta)


def test_title_headings_and_lines_of_the_real_documents(doc: Built) -> None:
    rows = all_rows(doc)
    first = next(r for r in rows if r["meta"]["locator"] == "multi_page.pdf#page=1")
    qa = {text_of(first["messages"][i]): text_of(first["messages"][i + 1]) for i in range(0, len(first["messages"]), 2)}
    assert qa["What is the title of this document?"] == "The Evolution of the Word Processor"
    assert "\"Pre-Digital Era (19th - Early 20th Century)\"" in qa["What are the section headings on this page?"]
    arxiv = next(r for r in rows if r["meta"]["locator"] == "2305.03393v1-pg9.pdf#page=1")
    assert text_of(arxiv["messages"][1]) == ('The section headings are: "5.1 Hyper Parameter Optimization"; '
                                            '"5.2 Quantitative Results".')
    assert "What is the title of this document?" not in text_of(arxiv["messages"][0])  # its first line is a running head
    ctx = arxiv["meta"]["context"]
    assert ctx["page"] == 1 and ctx["n_pages"] == 1 and ctx["dpi"] == 72
    for line in ctx["lines"]:
        x0, y0, x1, y1 = line["box"]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert all(w["text"] in ctx["ocr_text"] for w in ctx["words"])
    im = decode(arxiv["images"][0]["bytes"])
    assert im.size == (612, 792)  # 8.5 x 11 in at 72 dpi
    page_of = next(r for r in rows if r["meta"]["locator"] == "multi_page.pdf#pages")
    assert len(page_of["images"]) == 5 and sum(1 for p in page_of["messages"][0]["content"] if p["type"] == "image") == 5


def test_the_red_box_surrounds_the_line_it_asks_about(doc: Built) -> None:
    rows = [r for r in all_rows(doc) if "line" in r["meta"]]
    assert rows
    for row in rows:
        im = np.asarray(decode(row["images"][0]["bytes"])).astype(int)
        rendered = pdfium.PdfDocument(DOCS / row["meta"]["scene"])[row["meta"]["page"] - 1].render(scale=1.0)
        page_im = np.asarray(rendered.to_pil().convert("RGB")).astype(int)  # the recipe's 72 dpi
        red = (np.abs(im - page_im).sum(axis=-1) > 0) & (im[..., 0] > 200) & (im[..., 1] < 60)  # what was drawn
        ys, xs = np.nonzero(red)
        box = row["meta"]["context"]["line"]["box"]
        h, w = red.shape
        assert xs.min() <= box[0] * w <= xs.max() and ys.min() <= box[1] * h <= box[3] * h <= ys.max()
        assert (ys.max() - ys.min()) < 0.05 * h  # one line, not a block
        pdf = pdfium.PdfDocument(DOCS / row["meta"]["scene"])
        page = pdf[row["meta"]["page"] - 1]
        pw, ph = page.get_size()
        l_, t_, r_, b_ = box[0] * pw, (1 - box[1]) * ph, box[2] * pw, (1 - box[3]) * ph
        inside = re.sub(r"\s+", " ", page.get_textpage().get_text_bounded(l_ - 1, b_ - 1, r_ + 1, t_ + 1)).strip()
        assert text_of(row["messages"][1]).replace(" ", "") in inside.replace(" ", "")


def test_no_document_in_two_splits_and_an_empty_page_is_counted(doc: Built) -> None:
    import datasets

    splits: dict[str, set[str]] = {}
    for split in datasets.load_from_disk(str(doc.path)):
        for row in doc.split_rows(split):
            splits.setdefault(row["meta"]["scene"], set()).add(split)
    assert all(len(s) == 1 for s in splits.values()) and len(splits) == 2
    # page 5 has no heading and no title: nothing to ask offline, so it is counted, not dropped
    assert doc.manifest["rejects"] == {"no_instruction": 1}


def _image_only_pdf(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (200, 100), (250, 250, 250)).save(path, format="PDF")
    return path


def test_broken_encrypted_and_image_only_pdfs(ws: Workspace) -> None:
    ws.write("pdfs/broken.pdf", b"%PDF-1.4\n this is not a pdf")
    _image_only_pdf(ws.path("pdfs/scan.pdf"))
    ws.copy(DOCS / "2305.03393v1-pg9.pdf", "pdfs/good.pdf")
    ws.write("pdfs/locked.pdf", _encrypted_pdf())
    built = ws.build({"name": "t", "sources": [{"name": "d", "kind": "pdf", "path": "pdfs", "questions": ["headings"]}]})
    reasons = {r["locator"]: r["reason"] for r in built.rejects}
    assert reasons == {"broken.pdf": "pdf_error", "locked.pdf": "pdf_encrypted", "scan.pdf#page=1": "no_text"}
    assert [r["meta"]["locator"] for r in built.rows] == ["good.pdf#page=1"]
    kept = ws.build({"name": "t", "sources": [{"name": "d", "kind": "pdf", "path": "pdfs/scan.pdf",
                                               "require_text": False}]}, out="out2")
    # the scan passes the source (no text to ask about offline, so the instruct step counts it)
    assert [(r["stage"], r["reason"]) for r in kept.rejects] == [("instruct", "no_instruction")]


def _encrypted_pdf() -> bytes:
    """A minimal PDF with a standard-security /Encrypt dictionary (RC4, a user password): PDFium refuses it."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
            b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R /Encrypt 4 0 R /ID [<{'ab' * 16}> <{'ab' * 16}>] >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


def test_grounding_check_and_line_picking() -> None:
    assert grounded(quotes=["Hyper  Parameter\nOptimization"], page_text="5.1 Hyper Parameter Optimization") is None
    assert grounded(quotes=["5.3 Missing"], page_text="5.1 Hyper Parameter Optimization") == "5.3 Missing"
    texts = ["a b c d", "x", "e f g h i", "j k l m", "n o p q"]
    assert pick_lines(texts, n=2) == [2, 4] and pick_lines(texts, n=9) == [0, 2, 3, 4]


def test_highlight_crop_shows_only_the_line(ws: Workspace) -> None:
    built = ws.build({"name": "t", "sources": [{"name": "d", "kind": "pdf", "path": str(DOCS / "2305.03393v1-pg9.pdf"),
                                                "dpi": 144, "questions": ["line"], "highlight": "crop",
                                                "lines_per_page": 2}]})
    crops = [r for r in built.rows if "line" in r["meta"]]
    assert len(crops) == 2
    for row in crops:
        im = decode(row["images"][0]["bytes"])
        box = row["meta"]["context"]["line"]["box"]
        assert text_of(row["messages"][0]) == "What does this line of text say?"
        assert im.height < 40 and abs(im.width - (box[2] - box[0]) * 612 * 2) <= 12  # 144 dpi = 2x the points


# Table 1 of arXiv 2305.03393 (page 9), as printed: enc-layers, dec-layers, language, TEDs simple / complex /
# all, mAP (0.75), inference time (secs); the layer counts are merged cells spanning the OTSL and HTML rows.
TABLE_1 = [
    ["6", "6", "OTSL", "0.965", "0.934", "0.955", "0.88", "2.73"],
    ["6", "6", "HTML", "0.969", "0.927", "0.955", "0.857", "5.39"],
    ["4", "4", "OTSL", "0.938", "0.904", "0.927", "0.853", "1.97"],
    ["4", "4", "HTML", "0.952", "0.909", "0.938", "0.843", "3.77"],
    ["2", "4", "OTSL", "0.923", "0.897", "0.915", "0.859", "1.91"],
    ["2", "4", "HTML", "0.945", "0.901", "0.931", "0.834", "3.81"],
    ["4", "2", "OTSL", "0.952", "0.92", "0.942", "0.857", "1.22"],
    ["4", "2", "HTML", "0.944", "0.903", "0.931", "0.824", "2"],
]
COLUMNS = ["# enc-layers", "# dec-layers", "Language", "simple", "TEDs complex", "all", "mAP (0.75)",
           "Inference time (secs)"]


def test_the_table_is_recovered_from_the_layout_cell_by_cell() -> None:
    from vlmdata.pdf.layout import page_lines
    from vlmdata.pdf.tables import find_tables

    pdf = pdfium.PdfDocument(DOCS / "2305.03393v1-pg9.pdf")
    (table,) = find_tables([w for ln in page_lines(pdf[0]) for w in ln.words])
    assert [[c.text if c else None for c in r] for r in table.rows] == TABLE_1
    assert table.header == COLUMNS
    essay = pdfium.PdfDocument(DOCS / "multi_page.pdf")
    assert all(find_tables([w for ln in page_lines(essay[p]) for w in ln.words]) == [] for p in range(len(essay)))


def test_table_questions_answer_from_the_right_cell(doc: Built) -> None:
    rows = all_rows(doc)
    page = next(r for r in rows if r["meta"]["locator"] == "2305.03393v1-pg9.pdf#page=1")
    msgs = page["messages"]
    asked = 0
    for i in range(0, len(msgs), 2):
        q = text_of(msgs[i])
        m = re.fullmatch(r'In the table, what is the "(.+)" value where # enc-layers is (\d), # dec-layers is (\d), '
                         r'Language is (\w+)\?', q)
        if not m:
            continue
        asked += 1
        row = next(r for r in TABLE_1 if r[:3] == [m.group(2), m.group(3), m.group(4)])
        assert text_of(msgs[i + 1]) == row[COLUMNS.index(m.group(1))]
    assert asked == 2
    cells = [r for r in rows if "cell" in r["meta"]]
    assert len(cells) == 2
    for row in cells:
        box = row["meta"]["context"]["cell"]["box"]
        pg = pdfium.PdfDocument(DOCS / row["meta"]["scene"])[0]
        pw, ph = pg.get_size()
        inside = pg.get_textpage().get_text_bounded(box[0] * pw - 1, (1 - box[3]) * ph - 1, box[2] * pw + 1,
                                                    (1 - box[1]) * ph + 1).strip()
        assert inside == text_of(row["messages"][1]) and any(inside in r for r in TABLE_1)


def _ink_in_boxes(page, lines) -> float:
    """The share of the rendered page's ink that lies inside the line boxes."""
    ink = 255 - np.asarray(page.render(scale=1.0).to_pil().convert("L")).astype(float)
    h, w = ink.shape
    inside = np.zeros_like(ink, dtype=bool)
    for ln in lines:
        x0, y0, x1, y1 = ln.box
        inside[int(y0 * h):int(np.ceil(y1 * h)) + 1, int(x0 * w):int(np.ceil(x1 * w)) + 1] = True
    return float(ink[inside].sum() / ink.sum())


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_line_boxes_follow_a_rotated_page(rotation: int) -> None:
    import io

    from vlmdata.pdf.layout import page_lines

    pdf = pdfium.PdfDocument(DOCS / "2305.03393v1-pg9.pdf")
    upright = page_lines(pdf[0])
    upright_share = _ink_in_boxes(pdf[0], upright)  # the rest is the table's rules
    assert upright_share > 0.8
    pdf[0].set_rotation(rotation)
    buf = io.BytesIO()
    pdf.save(buf)
    turned_pdf = pdfium.PdfDocument(buf.getvalue())
    turned = page_lines(turned_pdf[0])
    chars = sorted("".join(w["text"] for ln in turned for w in ln.words))  # PDFium may split words differently
    assert chars == sorted("".join(w["text"] for ln in upright for w in ln.words))
    assert _ink_in_boxes(turned_pdf[0], turned) > upright_share - 0.02  # the boxes sit on the text as rendered
