"""The `embed` stage: each row gets `image_embeddings` ((n_images, d) float16, unit length) and, for
the roles a step asked for, `text_embeddings[role]` ((d,) float16). Both are internal columns: the
writer drops them; filters read them; the dedup step turns them into a compact key column (one
vector per unique image), so image bytes never travel to its `fit`.

It runs on the driver (`runs_on_driver`): one model in memory (on the GPU when there is one), one
cache connection. Vectors are cached by content sha256 (`cache.py`); the model is loaded only at
the first cache miss, so a rebuild with a warm cache neither loads torch's model nor re-embeds.
An image the model's processor cannot read becomes a reject (`embed_failed`), never a crash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vlmdata.dedup.textnorm import role_text
from vlmdata.embed.cache import EmbeddingCache, model_fingerprint
from vlmdata.embed.spec import EmbedSpec
from vlmdata.rows import Reject
from vlmdata.steps.base import MapStep, Row


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbedStep(MapStep):
    name: ClassVar[str] = "embed"
    runs_on_driver: ClassVar[bool] = True  # one model, one cache, batches in order

    def __init__(self, *, spec: EmbedSpec, roles: list[str], cache_dir: Path) -> None:
        self.spec = spec
        self.roles = sorted(set(roles))
        target = Path(spec.weights) if spec.backend == "open_clip" and spec.weights else Path(spec.model)
        self.fingerprint = model_fingerprint(target)
        self.cache = EmbeddingCache(path=cache_dir / "embeddings.sqlite", model=self.fingerprint)
        self._model: Any = None
        self.counts = {"images_embedded": 0, "images_cached": 0, "texts_embedded": 0, "texts_cached": 0}

    def __getstate__(self) -> dict[str, Any]:
        """Copies sent to workers (inside the dedup step, for `key`) leave the loaded model behind."""
        return {**self.__dict__, "_model": None}

    def model(self) -> Any:
        if self._model is None:
            from vlmdata.embed.model import Embedder  # imports torch: only on a cache miss

            self._model = Embedder(spec=self.spec)
        return self._model

    def _vectors(self, *, kind: str, items: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """sha → vector for every item (cache first, then the model); sha → error for those that failed."""
        found = self.cache.get(kind=kind, shas=items)
        self.counts[f"{kind}s_cached"] += len(found)
        missing = [s for s in items if s not in found]
        errors: dict[str, str] = {}
        if missing:
            embed = self.model().images if kind == "image" else self.model().texts
            try:
                vecs = dict(zip(missing, embed([items[s] for s in missing]), strict=True))
            except Exception:  # one bad image must not spoil its batch: retry one by one
                vecs = {}
                for s in missing:
                    try:
                        vecs[s] = embed([items[s]])[0]
                    except Exception as err:  # noqa: BLE001 - the reason goes into the reject
                        errors[s] = f"{type(err).__name__}: {err}"
            new = {s: v.astype(np.float16) for s, v in vecs.items()}
            self.cache.put(kind=kind, items=new)
            self.counts[f"{kind}s_embedded"] += len(new)
            found.update(new)
        return found, errors

    def blob_vectors(self, blobs: list[bytes]) -> np.ndarray:
        """(m, d) float16 vectors of encoded images (eval sets for `dedup.against`), cached by byte sha;
        an image that cannot be embedded raises ValueError naming it."""
        shas = ["bytes:" + hashlib.sha256(b).hexdigest() for b in blobs]
        vecs, errors = self._vectors(kind="image", items=dict(zip(shas, blobs, strict=True)))
        if errors:
            raise ValueError(f"embed: cannot embed {len(errors)} eval image(s): {next(iter(errors.values()))}")
        if not shas:
            return np.zeros((0, 0), np.float16)
        return np.stack([vecs[s] for s in shas])

    def map(self, batch: list[Any]) -> Iterator[Row | Reject]:
        images = {sha: blob for r in batch for sha, blob in zip(r["image_hashes"], r["images"], strict=True)}
        img_vec, img_err = self._vectors(kind="image", items=images)
        texts: dict[str, str] = {}
        row_texts = []
        for r in batch:
            per = {role: role_text(r.get("messages"), [role]) for role in self.roles}
            row_texts.append(per)
            texts.update({text_sha(t): t for t in per.values()})
        txt_vec, txt_err = self._vectors(kind="text", items=texts) if texts else ({}, {})
        for r, per in zip(batch, row_texts, strict=True):
            bad = [img_err[s] for s in r["image_hashes"] if s in img_err] + \
                  [txt_err[text_sha(t)] for t in per.values() if text_sha(t) in txt_err]
            if bad:
                meta = r.get("meta") or {}
                yield Reject(source=r.get("source", ""), locator=meta.get("locator", ""), reason="embed_failed",
                             detail=f"embed: {bad[0]}", stage=self.name, row_id=r.get("id"))
                continue
            dim = next(iter(img_vec.values())).size if img_vec else 0
            r["image_embeddings"] = np.stack([img_vec[s] for s in r["image_hashes"]]) if r["image_hashes"] else \
                np.zeros((0, dim), np.float16)
            r["text_embeddings"] = {role: txt_vec[text_sha(t)] for role, t in per.items()}
            yield r

    def report(self, state: Any = None) -> dict[str, Any]:
        return {"model": self.spec.model, "fingerprint": self.fingerprint, **self.counts}
