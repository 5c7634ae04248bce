"""`pdf`: PDF pages rendered at a set DPI, with their text layer (lines and words with [0, 1] boxes).

    - name: papers
      kind: pdf
      path: ../examples/documents       # a file, or every .pdf under a folder
      dpi: 96
      questions: [line, title, headings, page_of, table]
      highlight: box                    # line questions: a red box drawn on the page, or `crop`: the line cut out

Reading uses pypdfium2 (the `[pdf]` extra; its wheels bundle PDFium, no system library), imported
inside the reader. Each page is a row whose context holds the page text (`ocr_text`, for the
`document/qa` template), its lines and words with boxes (LLaVA-style `line_boxes`), the title and the
headings; its conversation asks what the layout answers (`vlmdata.pdf.questions`). Each highlighted
line is a row of its own (its image differs). A short document (2 to `max_images` pages) also gets a
row with all its pages that asks on which page a section starts. Every answer passes the grounding
check (its quoted text is on the page) or becomes a reject `ungrounded`.

An encrypted PDF is a reject `pdf_encrypted`, an unreadable one `pdf_error`; a page without a text
layer (a scan) is a reject `no_text`, unless `require_text: false` keeps it (with an empty context,
for a synthesis template or labels).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from vlmdata.config.path_types import ExistingPath
from vlmdata.pdf.layout import page_lines
from vlmdata.pdf.questions import QUESTIONS, DocQuestion, grounded, headings_answer, norm, pick_lines
from vlmdata.pdf.tables import find_tables, lookups
from vlmdata.pdf.tables import to_json as table_json
from vlmdata.rows import ImageRef, Record, Reject
from vlmdata.schema import image_part, message, text_part
from vlmdata.sources.base import SourceSpec


class PdfSpec(SourceSpec):
    kind: Literal["pdf"] = "pdf"
    path: ExistingPath
    task: str = "doc_vqa"
    dpi: int = Field(default=96, ge=36, le=600)
    require_text: bool = True
    questions: list[DocQuestion] = Field(default_factory=lambda: ["line", "title", "headings", "page_of", "table"])
    highlight: Literal["box", "crop"] = "box"
    lines_per_page: int = Field(default=2, ge=0, le=50)  # highlighted-line rows per page
    cells_per_table: int = Field(default=2, ge=0, le=50)  # table lookups per table, and boxed-cell rows
    max_images: int = Field(default=5, ge=2, le=32)       # page_of rows only for documents this short
    max_pages: int | None = Field(default=None, ge=1)     # read at most this many pages of each document


def _files(path: Path) -> tuple[Path, list[Path]]:
    if path.is_file():
        return path.parent, [path]
    return path, sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf")


def _png(im: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _qa_messages(qa: list[tuple[str, str]], n_images: int) -> list[dict[str, Any]]:
    msgs = []
    for k, (q, a) in enumerate(qa):
        parts = [*(image_part() for _ in range(n_images)), text_part(q)] if k == 0 else [text_part(q)]
        msgs += [message("user", parts), message("assistant", [text_part(a)])]
    return msgs


def _boxed(image: Any, box: list[float], *, dpi: int) -> Any:
    """A copy of the page with a red rectangle around `box` ([0, 1] page coordinates), a little padded."""
    from PIL import ImageDraw

    w, h = image.size
    pad = max(2, round(dpi / 36))
    shown = image.copy()
    ImageDraw.Draw(shown).rectangle((round(box[0] * w) - pad, round(box[1] * h) - pad, round(box[2] * w) + pad,
                                     round(box[3] * h) + pad), outline=(255, 0, 0), width=max(2, pad // 2))
    return shown


def read_pdf(spec: PdfSpec) -> Iterator[Record | Reject]:
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise RuntimeError("the pdf source needs pypdfium2: pip install 'vlmdata[pdf]'") from None

    root, files = _files(spec.path)
    for file in files:
        doc = file.relative_to(root).as_posix()
        try:
            pdf = pdfium.PdfDocument(file)
        except pdfium.PdfiumError as e:
            encrypted = "password" in str(e).lower()
            yield Reject(spec.name, doc, "pdf_encrypted" if encrypted else "pdf_error",
                         f"{doc}: {'encrypted (a password is needed)' if encrypted else 'cannot open'}: {e}", "load")
            continue
        try:
            yield from _read_doc(pdf, spec=spec, doc=doc)
        finally:
            pdf.close()


def _read_doc(pdf: Any, *, spec: PdfSpec, doc: str) -> Iterator[Record | Reject]:
    """Every page: its own record, one per table cell and one per picked line; then the page-of questions."""
    n_pages = len(pdf)
    if n_pages == 0:
        yield Reject(spec.name, doc, "pdf_error", f"{doc} has no pages", "load")
        return
    pages: list[dict[str, Any]] = []
    for p in range(min(n_pages, spec.max_pages or n_pages)):
        locator = f"{doc}#page={p + 1}"
        page = None
        try:
            page = pdf[p]
            lines = page_lines(page)
            image = page.render(scale=spec.dpi / 72).to_pil().convert("RGB")
        except Exception as e:  # a damaged page object: the other pages still count
            yield Reject(spec.name, locator, "pdf_error", f"page {p + 1}: {type(e).__name__}: {e}", "load")
            continue
        finally:
            if page is not None:
                page.close()  # PDFium's page memory now, not at garbage collection
        if not lines and spec.require_text:
            yield Reject(spec.name, locator, "no_text", f"page {p + 1} of {doc} has no text layer (a scan?); "
                                                        "set require_text: false to keep such pages", "load")
            continue
        context = _page_context(lines, spec=spec, doc=doc, page=p + 1, n_pages=n_pages)
        pages.append({"page": p + 1, "image": image, "text": context["ocr_text"], "headings": context["headings"]})
        tables = find_tables(context["words"]) if "table" in spec.questions else []
        if tables:
            context["tables"] = [table_json(t) for t in tables]
        page_ = _Page(locator=locator, image=image, lines=lines, context=context, meta={"scene": doc, "page": p + 1})
        yield from _page_record(page_, tables, spec=spec)
        yield from _cell_records(page_, tables, spec=spec)
        if "line" in spec.questions:
            yield from _line_records(page_, spec=spec)
    if "page_of" in spec.questions and 2 <= len(pages) <= spec.max_images:
        yield from _page_of(pages, spec=spec, doc=doc)


@dataclass(frozen=True)
class _Page:
    """One rendered page and what every record made from it shares."""

    locator: str
    image: Any  # PIL RGB
    lines: list[Any]
    context: dict[str, Any]
    meta: dict[str, Any]

    @property
    def text(self) -> str:
        return self.context["ocr_text"]


def _page_context(lines: list[Any], *, spec: PdfSpec, doc: str, page: int, n_pages: int) -> dict[str, Any]:
    """The page's text layer as row context: text, lines with boxes, words, headings, the title on page 1."""
    headings = [ln.text for ln in lines if ln.heading]
    context: dict[str, Any] = {
        "doc": doc, "page": page, "n_pages": n_pages, "dpi": spec.dpi, "ocr_text": "\n".join(ln.text for ln in lines),
        "lines": [ln.to_json() for ln in lines], "words": [w for ln in lines for w in ln.words],
        "line_boxes": [f"{ln.text} {ln.box}" for ln in lines], "headings": headings,
    }
    if page == 1 and lines and lines[0].heading:
        context["title"] = lines[0].text
    return context


def _page_record(page: _Page, tables: list[Any], *, spec: PdfSpec) -> Iterator[Record | Reject]:
    """The whole page with its grounded questions (title, headings, table lookups, the full text)."""
    title, headings, text = page.context.get("title"), page.context["headings"], page.text
    qa: list[tuple[str, str, list[str]]] = []
    if "title" in spec.questions and title:
        qa.append((QUESTIONS["title"], title, [title]))
    page_headings = [h for h in headings if h != title]
    if "headings" in spec.questions and page_headings:
        qa.append((QUESTIONS["headings"], headings_answer(page_headings), page_headings))
    for t in tables:
        for q, cell, quotes in lookups(t, n=spec.cells_per_table):
            qa.append((q, cell.text, [cell.text, *quotes]))
    if "text" in spec.questions and text:
        qa.append((QUESTIONS["text"], text, [text]))
    good = []
    for q, a, quotes in qa:
        missing = grounded(quotes=quotes, page_text=text)
        if missing is None:
            good.append((q, a))
        else:
            yield Reject(spec.name, page.locator, "ungrounded", f"answer quotes {missing!r}, not on the page", "load")
    yield Record(source=spec.name, locator=page.locator, task=spec.task, images=[ImageRef(data=_png(page.image))],
                 messages=_qa_messages(good, 1) if good else None, context=page.context, meta=page.meta)


def _cell_records(page: _Page, tables: list[Any], *, spec: PdfSpec) -> Iterator[Record | Reject]:
    """One record per looked-up table cell: the page with the cell boxed, asking for its text."""
    for t_i, t in enumerate(tables):
        for k, (_, cell, _) in enumerate(lookups(t, n=spec.cells_per_table)):
            locator = f"{page.locator}&table={t_i}&cell={k}"
            if grounded(quotes=[cell.text], page_text=page.text) is not None:
                yield Reject(spec.name, locator, "ungrounded", f"cell {cell.text!r} not on the page", "load")
                continue
            shown = _boxed(page.image, cell.box, dpi=spec.dpi)
            yield Record(source=spec.name, locator=locator, task=spec.task, images=[ImageRef(data=_png(shown))],
                         messages=_qa_messages([(QUESTIONS["table_cell"], cell.text)], 1),
                         context={**page.context, "cell": {"text": cell.text, "box": cell.box}},
                         meta={**page.meta, "cell": [t_i, k]})


def _line_records(page: _Page, *, spec: PdfSpec) -> Iterator[Record | Reject]:
    """One record per picked line: the line cropped out or boxed on the page, asking for its text."""
    image, lines = page.image, page.lines
    for i in pick_lines([ln.text for ln in lines], n=spec.lines_per_page):
        ln = lines[i]
        locator = f"{page.locator}&line={i}"
        if grounded(quotes=[ln.text], page_text=page.text) is not None:
            yield Reject(spec.name, locator, "ungrounded", f"line {ln.text!r} not on the page", "load")
            continue
        w, h = image.size
        pad = max(2, round(spec.dpi / 36))
        x0, y0, x1, y1 = (round(ln.box[0] * w) - pad, round(ln.box[1] * h) - pad,
                          round(ln.box[2] * w) + pad, round(ln.box[3] * h) + pad)
        if spec.highlight == "crop":
            shown, question = image.crop((max(0, x0), max(0, y0), min(w, x1), min(h, y1))), QUESTIONS["line_crop"]
        else:
            shown, question = _boxed(image, ln.box, dpi=spec.dpi), QUESTIONS["line_box"]
        yield Record(source=spec.name, locator=locator, task=spec.task, images=[ImageRef(data=_png(shown))],
                     messages=_qa_messages([(question, ln.text)], 1), context={**page.context, "line": ln.to_json()},
                     meta={**page.meta, "line": i})


def _page_of(pages: list[dict[str, Any]], *, spec: PdfSpec, doc: str) -> Iterator[Record | Reject]:
    qa = []
    for pg in pages:
        for h in pg["headings"]:
            on = [other["page"] for other in pages if norm(h) in norm(other["text"])]
            if on == [pg["page"]]:  # unambiguous: the heading's text is on this page only
                qa.append((QUESTIONS["page_of"].format(heading=h), f"Page {pg['page']}."))
    if not qa:
        return
    k = len(pages)
    yield Record(source=spec.name, locator=f"{doc}#pages", task=spec.task,
                 images=[ImageRef(data=_png(pg["image"])) for pg in pages], messages=_qa_messages(qa[:4], k),
                 context={"doc": doc, "n_pages": k, "headings": {pg["page"]: pg["headings"] for pg in pages}},
                 meta={"scene": doc, "pages": [pg["page"] for pg in pages]})
