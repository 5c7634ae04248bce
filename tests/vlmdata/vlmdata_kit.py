"""Helpers for vlmdata tests: real images drawn with PIL, real DICOM from pydicom's test files, recipes
written as YAML into a temporary folder, and real builds (`load_recipe` + `build`) read back from disk.
(A module with a unique name, not conftest, so tests can import it next to tests/vlmtrain's conftest.)

    def test_x(ws):
        ws.image("imgs/a.png", seed=1)
        ws.jsonl("qa.jsonl", [{"image": "imgs/a.png", "question": "q?", "answers": ["a"]}])
        built = ws.build({"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}]})
        assert built.rows[0]["messages"][0]["role"] == "user"
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml


def picture(seed: int, size: tuple[int, int] = (32, 24)):
    """A small RGB picture: a grid of up to 8×8 blocks of seed-dependent brightness, in one seeded tint.

    Pictures of different seeds are far apart under every perceptual hash: each block's brightness is an
    independent draw, so hash bits differ like coin flips (a 64-bit distance near 32; the kit's own test
    checks that no two of the first 200 seeds come within 12 bits). Tests that count clusters, splits or
    mixes can rely on that; four flat quadrants could not (most of their DCT is 0, so unrelated seeds
    fell within a few bits of each other). One tint per picture keeps JPEG's chroma subsampling harmless,
    and a rotation differs from the original.
    """
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    w, h = size
    cols, rows = max(1, min(8, w // 4)), max(1, min(8, h // 4))
    tint = [rng.randrange(-48, 49) for _ in range(3)]
    im = Image.new("RGB", size)
    draw = ImageDraw.Draw(im)
    for r in range(rows):
        for c in range(cols):
            grey = rng.randrange(48, 208)
            box = (c * w // cols, r * h // rows, (c + 1) * w // cols - 1, (r + 1) * h // rows - 1)
            draw.rectangle(box, fill=tuple(grey + t for t in tint))
    return im


def encode(im, fmt: str, **save_kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **save_kw)
    return buf.getvalue()


def decode(data: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A syntactically valid PNG that claims a huge size (a decompression bomb's header) but holds no pixels."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def dicom_file(name: str) -> Path:
    """A DICOM file shipped with pydicom (no download)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is not installed"
    return Path(path)


def text_of(message: dict[str, Any]) -> str:
    return "".join(p["text"] or "" for p in message["content"] if p["type"] == "text")


@dataclass
class Built:
    """A finished build, read back from disk."""

    path: Path
    manifest: dict[str, Any]

    def split_rows(self, split: str = "train") -> list[dict[str, Any]]:
        """Rows of a split as plain dicts (images as stored bytes, meta parsed), without PIL decoding."""
        import datasets

        dd = datasets.load_from_disk(str(self.path))
        rows = dd[split].with_format("arrow")[:].to_pylist()
        for r in rows:
            r["meta"] = json.loads(r["meta"])
        return rows

    @cached_property
    def rows(self) -> list[dict[str, Any]]:
        return self.split_rows("train")

    @cached_property
    def rejects(self) -> list[dict[str, Any]]:
        lines = (self.path / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    def by_source(self, source: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["source"] == source]

    def image(self, row: dict[str, Any], i: int = 0):
        return decode(row["images"][i]["bytes"])


class Workspace:
    """A temporary folder to write inputs and recipes into and to build from."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write(self, rel: str, content: str | bytes) -> Path:
        p = self.path(rel)
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
        return p

    def image(self, rel: str, *, seed: int = 0, size: tuple[int, int] = (32, 24), fmt: str | None = None,
              mode: str = "RGB", **save_kw: Any) -> Path:
        im = picture(seed, size)
        if mode != "RGB":
            im = im.convert(mode)
        p = self.path(rel)
        im.save(p, format=fmt, **save_kw)
        return p

    def copy(self, src: Path, rel: str) -> Path:
        p = self.path(rel)
        shutil.copyfile(src, p)
        return p

    def jsonl(self, rel: str, rows: Sequence[dict[str, Any] | str]) -> Path:
        """One JSON object per line; a `str` item is written verbatim (for malformed lines)."""
        return self.write(rel, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))

    def recipe(self, data: dict[str, Any] | str, rel: str = "recipe.yaml") -> Path:
        return self.write(rel, data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))

    def load(self, recipe: Path | dict[str, Any], *, overrides: Sequence[str] = ()):
        from vlmdata.recipe import load_recipe

        path = recipe if isinstance(recipe, Path) else self.recipe(recipe)
        return load_recipe(path, overrides=list(overrides))

    def build(self, recipe: Path | dict[str, Any], *, out: str | Path = "out", overrides: Sequence[str] = (),
              limit: int | None = None) -> Built:
        from vlmdata.build import build

        loaded = self.load(recipe, overrides=overrides)
        result = build(loaded, out=self.root / out, limit=limit, progress=False)
        return Built(path=result.path, manifest=result.manifest)


def sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
