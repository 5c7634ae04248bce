"""`DedupStep.fit`: the key table of every row → a `DedupState` (who goes, why, for whom; clusters).

The stages run in decide.py's order, each on the rows the stages before it kept: contamination,
exact text, near text, images (or image + question). Each stage is one function below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vlmdata.dedup.minhash import dedup_bands, lsh_labels
from vlmdata.dedup.semantic import keep_rank, semantic_groups, semantic_hits
from vlmdata.steps.dedup.against import EvalSet, load_eval_set
from vlmdata.steps.dedup.decide import CODE, first_of_groups, gram_hits, image_clusters, sequence_groups
from vlmdata.steps.dedup.spec import DedupSpec, ImageDedup
from vlmdata.steps.dedup.state import SHOWN_DUPLICATES, Clusters, DedupState

Embed = Callable[[list[bytes]], np.ndarray]


def _offsets(keys: Any, name: str) -> np.ndarray:
    """A list column → its offsets (n + 1,) int64, starting at 0 (nulls count as empty lists)."""
    lengths = pc.fill_null(pc.list_value_length(keys.column(name)), 0).to_numpy()
    return np.r_[0, np.cumsum(lengths, dtype=np.int64)]


def _flat(keys: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A numeric list column → (values, offsets (n + 1,))."""
    values = pc.list_flatten(keys.column(name)).to_numpy()
    return values, _offsets(keys, name)


@dataclass
class _Fit:
    """One fit in progress: the key table, its row/image layout, and the rows still alive."""

    keys: Any
    spec: DedupSpec
    image: ImageDedup
    state: DedupState
    alive: np.ndarray  # (n,) bool: not dropped by an earlier stage
    sha_off: np.ndarray  # (n + 1,) offsets of each row's images into the flat image list
    semantic: bool

    @property
    def n(self) -> int:
        return self.keys.num_rows

    @property
    def n_sha(self) -> int:
        return int(self.sha_off[-1])

    @property
    def n_img(self) -> np.ndarray:
        return np.diff(self.sha_off)

    @property
    def img_row(self) -> np.ndarray:
        return np.repeat(np.arange(self.n), self.n_img)

    @property
    def ids(self) -> Any:
        return self.keys.column("id") if self.n else None

    def drop(self, rep: np.ndarray, reason: str) -> None:
        """Drop every alive row whose representative `rep` is another row; record whom it duplicates."""
        gone = np.flatnonzero(self.alive & (rep >= 0) & (rep != np.arange(rep.size)))
        self.state.reason[gone] = CODE[reason]
        self.alive[gone] = False
        if gone.size:  # only the dropped rows' representatives' ids become Python strings
            reps, inv = np.unique(rep[gone], return_inverse=True)
            names = [str(x) for x in self.ids.take(reps).to_pylist()]
            for i, k in zip(gone.tolist(), inv.ravel().tolist(), strict=True):
                self.state.dup_of[i] = names[k]
        self.state.summary["removed"][reason] = int(gone.size)

    def contaminate(self, r: int, name: str, eval_id: str, counts: dict[str, int]) -> None:
        self.state.reason[r] = CODE["contaminated"]
        self.state.dup_of[r] = eval_id
        self.state.eval_set[r] = name
        self.alive[r] = False
        counts[name] += 1


def fit_dedup(keys: Any, *, spec: DedupSpec, seed: int, workers: int, embed: Embed | None = None) -> DedupState:
    """`embed` (semantic dedup with `against`): encoded images → unit vectors, for the eval images."""
    keys = _in_idx_order(keys)
    n = keys.num_rows
    image = spec.image_hashing()
    fit = _Fit(keys=keys, spec=spec, image=image, state=DedupState(reason=np.zeros(n, np.uint8), summary={"removed": {}}),
               alive=np.ones(n, dtype=bool), sha_off=_offsets(keys, "img_sha") if n else np.zeros(1, np.int64),
               semantic=spec.images is not None and spec.images.method == "semantic")
    evals = [load_eval_set(p, ngram=spec.against_ngram, method=image.hash_method, hash_size=image.hash_size,
                           workers=workers, embed=embed) for p in spec.against]
    rep_img = np.arange(fit.n_sha)
    if "img_hash" in keys.column_names and n:
        rep_img = _decontaminate(fit, evals)
    if spec.text is not None and n:
        _text_duplicates(fit)
    rank = vecs = None
    if fit.semantic and fit.n_sha:
        rep_img, img_rank, vecs = _semantic(fit, seed=seed)
        rank = np.where(fit.n_img > 0, img_rank[np.minimum(fit.sha_off[:-1], fit.n_sha - 1)], 0)
    if spec.images is not None and n:
        _image_duplicates(fit, rep_img, rank, vecs)
    _clusters(fit, rep_img)
    state = fit.state
    state.summary["kept"] = int(fit.alive.sum())
    image_dups = np.flatnonzero(np.isin(state.reason, [CODE["duplicate_image"], CODE["duplicate_vqa"]]))
    state.show = set(image_dups[:SHOWN_DUPLICATES].tolist())  # deterministic: the first by _idx
    return state


def _in_idx_order(keys: Any) -> Any:
    """The key table sorted by `_idx` (the local engine's already is), checked to number rows 0..n-1."""
    n = keys.num_rows
    if n and not np.array_equal(keys.column("_idx").to_numpy(), np.arange(n)):
        keys = keys.sort_by("_idx")
        if keys.column("_idx")[n - 1].as_py() != n - 1:
            raise ValueError("dedup: _idx must number the rows 0..n-1")
    return keys


def _eval_names(evals: list[EvalSet], paths: list[Any]) -> list[str]:
    """Each eval set's name, its path where two share a folder name."""
    names = [e.name for e in evals]
    return [e.name if names.count(e.name) == 1 else str(p) for e, p in zip(evals, paths, strict=True)]


def _decontaminate(fit: _Fit, evals: list[EvalSet]) -> np.ndarray:
    """Perceptual-hash clusters of our images (rep (n_images,)), after dropping the rows near an eval set:
    an image near an eval image, a question n-gram of an eval question, or (semantic) an embedding."""
    hashes, _ = _flat(fit.keys, "img_hash")
    rep_img, hit = image_clusters(hashes.astype(np.uint64), max_distance=fit.image.max_distance, evals=evals)
    if fit.spec.images is None or fit.semantic:
        rep_img = np.arange(fit.n_sha)
    names = _eval_names(evals, fit.spec.against)
    eval_set_of = np.repeat(np.arange(len(evals)), [e.image_hashes.size for e in evals])
    eval_row_of = np.concatenate([e.image_owner for e in evals]) if evals else np.empty(0, np.int64)
    counts = dict.fromkeys(names, 0)
    img_row = fit.img_row
    for img in np.flatnonzero(hit >= 0).tolist():
        r = int(img_row[img])
        if fit.alive[r]:
            s = int(eval_set_of[hit[img]])
            fit.contaminate(r, names[s], evals[s].ids[int(eval_row_of[hit[img]])], counts)
    if not evals:
        return rep_img
    grams, g_off = _flat(fit.keys, "grams")
    owner = np.repeat(np.arange(fit.n), np.diff(g_off))
    for s, ev in enumerate(evals):
        rows = gram_hits(grams.astype(np.uint64), owner, fit.n, ev)
        for r in np.flatnonzero((rows >= 0) & fit.alive).tolist():
            fit.contaminate(r, names[s], ev.ids[int(rows[r])], counts)
    if fit.semantic and fit.n_sha:
        _semantic_contamination(fit, evals, names, counts)
    summary = fit.state.summary
    summary["contaminated"] = counts
    summary["against_image_hash"] = {"method": fit.image.method, "max_distance": fit.image.max_distance,
                                     "hash_size": fit.image.hash_size}
    summary["removed"]["contaminated"] = sum(counts.values())
    return rep_img


def _semantic_contamination(fit: _Fit, evals: list[EvalSet], names: list[str], counts: dict[str, int]) -> None:
    """Rows with an image at cosine ≥ threshold to an eval image (the eval set's best match is recorded)."""
    vecs, _, inv = _unique_vectors(fit.keys)
    img_row = fit.img_row
    for s, ev in enumerate(evals):
        best = np.full(vecs.shape[0], -1, np.int64)
        best_cos = np.zeros(vecs.shape[0], np.float64)
        for u, e_img, cos in semantic_hits(vecs, ev.image_vectors, threshold=fit.spec.images.threshold):
            best[u], best_cos[u] = e_img, cos
        for img in np.flatnonzero(best[inv] >= 0).tolist():
            r = int(img_row[img])
            if fit.alive[r]:
                fit.contaminate(r, names[s], ev.ids[int(ev.image_owner[best[inv[img]]])], counts)
                fit.state.cosine[r] = round(float(best_cos[inv[img]]), 4)


def _text_duplicates(fit: _Fit) -> None:
    """Identical normalised text, then (minhash) near-duplicate text among the rows left."""
    text_hash = fit.keys.column("text_hash").to_numpy()
    fit.drop(first_of_groups(text_hash, fit.alive & (text_hash != 0)), "duplicate_exact")
    t = fit.spec.text
    if t.method != "minhash":
        return
    bands, rows = (t.bands, t.rows) if t.bands and t.rows else dedup_bands(threshold=t.threshold, num_perm=t.num_perm)
    sig = fit.keys.column("sig").combine_chunks().values.to_numpy().reshape(fit.n, t.num_perm)
    fit.drop(lsh_labels(sig, bands=bands, rows=rows, threshold=t.threshold, active=fit.alive), "duplicate_near_text")
    fit.state.summary["minhash"] = {"bands": bands, "rows": rows}


def _image_duplicates(fit: _Fit, rep_img: np.ndarray, rank: np.ndarray | None, vecs: np.ndarray | None) -> None:
    """Rows whose image sequence (and question, with vqa_composite) matches an earlier or better-ranked row's.
    `vecs` (semantic): every image's vector, to record each dropped row's cosine to the row it duplicates."""
    q = fit.keys.column("q_hash").to_numpy() if fit.spec.vqa_composite else None
    codes, has = sequence_groups(rep_img, fit.sha_off, q)
    rep = first_of_groups(codes, fit.alive & has, rank)
    if vecs is not None:
        gone = np.flatnonzero(fit.alive & (rep >= 0) & (rep != np.arange(fit.n)))
        first_img = fit.sha_off[:-1]
        cos = np.einsum("ij,ij->i", vecs[first_img[gone]].astype(np.float32),
                        vecs[first_img[rep[gone]]].astype(np.float32))
        fit.state.cosine.update(zip(gone.tolist(), np.round(cos, 4).tolist(), strict=True))
    fit.drop(rep, "duplicate_vqa" if fit.spec.vqa_composite else "duplicate_image")
    fit.state.summary["image_clusters"] = int(np.unique(rep_img).size)


def _clusters(fit: _Fit, rep_img: np.ndarray) -> None:
    """image_cluster: the sha of each row's first image's cluster representative ("" for text-only rows)."""
    n, n_sha, sha_off = fit.n, fit.n_sha, fit.sha_off
    first_rep = np.where(fit.n_img > 0, rep_img[np.minimum(sha_off[:-1], max(n_sha - 1, 0))], -1) if n else \
        np.empty(0, np.int64)
    uniq, inv = np.unique(first_rep, return_inverse=True)
    parts = [pa.array([""], pa.string())] if uniq.size and uniq[0] < 0 else []
    if n and uniq.size and uniq[-1] >= 0:
        parts.append(pc.cast(pc.list_flatten(fit.keys.column("img_sha")).take(uniq[uniq >= 0]), pa.string()))
    fit.state.clusters = Clusters(pa.concat_arrays([p.combine_chunks() if isinstance(p, pa.ChunkedArray) else p
                                                    for p in parts]) if parts else None)
    fit.state.cluster = inv.ravel()


def _unique_vectors(keys: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, d) vectors of the unique images (by pixel sha), first occurrence of each (u,), and each
    image's unique index (n_images,). Unique indices follow first appearance, so they keep row order."""
    sha = pc.list_flatten(keys.column("img_sha")).combine_chunks().dictionary_encode()
    inv = sha.indices.to_numpy().astype(np.int64)
    first = np.full(len(sha.dictionary), inv.size, np.int64)
    np.minimum.at(first, inv, np.arange(inv.size))
    flat = pc.list_flatten(keys.column("img_emb")).combine_chunks().to_numpy(zero_copy_only=False)
    vecs = flat.reshape(inv.size, -1)
    return vecs[first], first, inv


def _semantic(fit: _Fit, *, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SemDeDup over the unique images → (rep (n_images,) smallest image index of each one's group,
    rank (n_images,) the `keep` order, all images' vectors (n_images, d))."""
    im = fit.spec.images
    vecs, first, inv = _unique_vectors(fit.keys)
    groups = semantic_groups(vecs, threshold=im.threshold, clusters=None if im.clusters == "auto" else im.clusters,
                             seed=seed)
    rank_u = keep_rank(groups, keep=im.keep, seed=seed)
    fit.state.summary["semantic"] = {"images": int(vecs.shape[0]), "clusters": groups.clusters, "pairs": groups.pairs,
                                     "groups": int(np.unique(groups.labels).size), "threshold": im.threshold,
                                     "keep": im.keep}
    return first[groups.labels[inv]], rank_u[inv], vecs[inv]
