"""`webdataset`: WebDataset tar shards, `{key}.jpg|jpeg|png|webp` + `{key}.json|txt`, read shard by shard.

    - {name: laion, kind: webdataset, path: shards/}                        # every *.tar in the folder
    - {name: wds, kind: webdataset, path: "shards/train-{000000..000009}.tar"}
    - {name: s3, kind: webdataset, path: "s3://bucket/train-*.tar"}         # any fsspec URL (its package installed)

Members are grouped into samples by key (the name up to the first dot, as WebDataset does); a tar is
streamed, never unpacked or held whole. A sample's `.json` with `messages` (vlmdata's own export, or
any HF/TRL/OpenAI messages) keeps its turns; any other `.json` maps through `fields` like a table, with
the sample's `.txt` as its caption. Several images are `{key}.0.jpg`, `{key}.1.png` ..., in that order.
A sample with no image, no text or broken json is a reject; a shard that cannot be read is one reject
(`malformed_shard`) and the next shard is read.
"""

from __future__ import annotations

import glob
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationInfo, field_validator

from vlmdata.config.path_types import resolve
from vlmdata.rows import ImageRef, Record, Reject, RowError
from vlmdata.sources.base import SourceSpec, _as_answers, record_from_mapping
from vlmdata.sources.chat import turns_to_messages

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


class WebDatasetSpec(SourceSpec):
    kind: Literal["webdataset"] = "webdataset"
    path: str  # a folder of .tar, one .tar, a glob, a {000..009} range, or an fsspec URL of those
    task: str = "caption"

    @field_validator("path")
    @classmethod
    def _local_exists(cls, value: str, info: ValidationInfo) -> str:
        if "://" in value:
            return value
        local = str(resolve(value, info))
        if not shard_urls(local):
            raise ValueError(f"no tar shards at {local}")
        return local

    def default_image_root(self) -> Path:
        return self.image_root or Path.cwd()


def expand_braces(pattern: str) -> list[str]:
    """'a-{000..002}.tar' -> ['a-000.tar', 'a-001.tar', 'a-002.tar'] (zero padding kept)."""
    m = _BRACES.search(pattern)
    if m is None:
        return [pattern]
    lo, hi = m.group(1), m.group(2)
    head, tail = pattern[: m.start()], pattern[m.end():]
    return [u for n in range(int(lo), int(hi) + 1) for u in expand_braces(f"{head}{str(n).zfill(len(lo))}{tail}")]


def shard_urls(path: str) -> list[str]:
    """The shards a path names, in order: a folder's *.tar (sorted), a glob, a brace range, or one file/URL."""
    out: list[str] = []
    for p in expand_braces(path):
        if "://" in p:
            if any(c in p for c in "*?["):
                import fsspec

                fs, _, paths = fsspec.get_fs_token_paths(p)
                out += sorted(fs.unstrip_protocol(x) for x in paths)
            else:
                out.append(p)
        elif Path(p).is_dir():
            out += sorted(str(x) for x in Path(p).iterdir() if x.name.endswith((".tar", ".tar.gz", ".tgz")))
        elif any(c in p for c in "*?["):
            out += sorted(glob.glob(p))
        elif Path(p).is_file():
            out.append(p)
    return out


def _open(url: str):
    if "://" in url:
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url, "rb")  # noqa: SIM115 - closed by the caller's with


def iter_samples(url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of one shard, streaming; tarfile errors propagate."""
    key, sample = None, {}
    with _open(url) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            folder, _, base = member.name.rpartition("/")
            stem, dot, ext = base.partition(".")
            if not dot:
                continue
            k = f"{folder}/{stem}" if folder else stem
            if k != key and sample:
                yield key, sample
                sample = {}
            key = k
            sample[ext.lower()] = tar.extractfile(member).read()
    if sample:
        yield key, sample


def _images(sample: dict[str, bytes]) -> list[ImageRef]:
    """Images in order: a plain `jpg` first, then `0.jpg`, `1.png`, ... by their number."""
    found = []
    for ext, data in sample.items():
        head, _, last = ext.rpartition(".")
        if last not in IMAGE_EXTS:
            continue
        order = -1 if not head else int(head) if head.isdigit() else None
        if order is not None:
            found.append((order, ext, data))
    return [ImageRef(data=data) for _, _, data in sorted(found)]


def sample_record(sample: dict[str, bytes], *, spec: WebDatasetSpec, locator: str) -> Record | Reject:
    images = _images(sample)
    doc: Any = {}
    if "json" in sample:
        try:
            doc = json.loads(sample["json"])
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RowError("malformed_line", f"{locator}.json is not JSON ({e})") from None
        if not isinstance(doc, dict):
            raise RowError("malformed_line", f"{locator}.json is {type(doc).__name__}, not an object")
    if isinstance(doc.get("messages"), list):
        root = spec.default_image_root()
        messages, ordered = turns_to_messages(doc["messages"], images=images, root=root)
        return Record(source=spec.name, locator=locator, task=str(doc.get("task") or spec.task), images=ordered,
                      fields={"answers": _as_answers(doc.get("answers"))}, messages=messages,
                      context={k: doc[k] for k in ("id", "source") if isinstance(doc.get(k), str)})
    raw = dict(doc)
    if "txt" in sample and spec.fields.caption not in raw:
        raw[spec.fields.caption] = sample["txt"].decode("utf-8", errors="replace").strip()
    if not raw:
        raise RowError("missing_field", f"sample '{locator}' has no .json or .txt")
    if not images:
        raise RowError("image_missing", f"sample '{locator}' has no {'/'.join(IMAGE_EXTS)} member")
    raw[spec.fields.image] = None
    record = record_from_mapping(raw, spec=spec, locator=locator, root=spec.default_image_root())
    if isinstance(record, Record):
        record.images = images
    return record


def read_webdataset(spec: WebDatasetSpec) -> Iterator[Record | Reject]:
    for url in shard_urls(spec.path):
        name = url.rsplit("/", 1)[-1]
        try:
            for key, sample in iter_samples(url):
                locator = f"{name}:{key}"
                try:
                    yield sample_record(sample, spec=spec, locator=locator)
                except RowError as e:
                    yield Reject(spec.name, locator, e.reason, e.detail, "load")
        except (tarfile.TarError, OSError, EOFError) as e:
            yield Reject(spec.name, name, "malformed_shard", f"{url}: {type(e).__name__}: {e}", "load")
