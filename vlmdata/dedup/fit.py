"""`DedupStep.fit`: the key table of every row → a `DedupState` (who goes, why, for whom; clusters).

Kept apart from the step so the step file stays a readable contract; the stage order and the
first-seen rule are described in decide.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from vlmdata.dedup.decide import CODE, first_of_groups, gram_hits, image_clusters, sequence_groups

if TYPE_CHECKING:  # pragma: no cover
    from vlmdata.steps.dedup import DedupSpec, DedupState, ImageDedup


def _offsets(keys: Any, name: str) -> np.ndarray:
    """A list column → its offsets (n + 1,) int64, starting at 0 (nulls count as empty lists)."""
    import pyarrow.compute as pc

    lengths = pc.fill_null(pc.list_value_length(keys.column(name)), 0).to_numpy()
    return np.r_[0, np.cumsum(lengths, dtype=np.int64)]


def _flat(keys: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A numeric list column → (values, offsets (n + 1,))."""
    import pyarrow.compute as pc

    values = pc.list_flatten(keys.column(name)).to_numpy()
    return values, _offsets(keys, name)


def _drop(state: DedupState, rep: np.ndarray, alive: np.ndarray, reason: str, id_col: Any) -> None:
    gone = np.flatnonzero(alive & (rep >= 0) & (rep != np.arange(rep.size)))
    state.reason[gone] = CODE[reason]
    alive[gone] = False
    # only the dropped rows' representatives' ids become Python strings
    if gone.size:
        reps, inv = np.unique(rep[gone], return_inverse=True)
        names = [str(x) for x in id_col.take(reps).to_pylist()]
        for i, k in zip(gone.tolist(), inv.ravel().tolist(), strict=True):
            state.dup_of[i] = names[k]
    state.summary["removed"][reason] = int(gone.size)


def fit_dedup(keys: Any, *, spec: DedupSpec, image: ImageDedup, seed: int, workers: int,
              embed: Callable[[list[bytes]], np.ndarray] | None = None) -> DedupState:
    """`embed` (semantic dedup with `against`): encoded images → unit vectors, for the eval images."""
    from vlmdata.dedup.against import load_eval_set
    from vlmdata.steps.dedup import DedupState

    n = keys.num_rows
    if n and not np.array_equal(keys.column("_idx").to_numpy(), np.arange(n)):  # the local engine: already so
        keys = keys.sort_by("_idx")
        if keys.column("_idx")[n - 1].as_py() != n - 1:
            raise ValueError("dedup: _idx must number the rows 0..n-1")
    ids = keys.column("id") if n else None
    state = DedupState(reason=np.zeros(n, dtype=np.uint8), summary={"removed": {}})
    alive = np.ones(n, dtype=bool)
    sha_off = _offsets(keys, "img_sha") if n else np.zeros(1, np.int64)
    n_sha = int(sha_off[-1])
    n_img = np.diff(sha_off)
    img_row = np.repeat(np.arange(n), n_img)

    evals = [load_eval_set(p, ngram=spec.against_ngram, method=image.hash_method, hash_size=image.hash_size,
                           workers=workers, embed=embed) for p in spec.against]
    semantic = spec.images is not None and spec.images.method == "semantic"
    names = [e.name if [x.name for x in evals].count(e.name) == 1 else str(p) for e, p in zip(evals, spec.against, strict=True)]
    rep_img = np.arange(n_sha)
    if "img_hash" in keys.column_names and n:
        hashes, _ = _flat(keys, "img_hash")
        rep_img, hit = image_clusters(hashes.astype(np.uint64), max_distance=image.max_distance, evals=evals)
        if spec.images is None or semantic:
            rep_img = np.arange(n_sha)
        # -- contaminated: an image near an eval image, or a question n-gram of an eval question
        eval_set_of = np.repeat(np.arange(len(evals)), [e.image_hashes.size for e in evals])
        eval_row_of = np.concatenate([e.image_owner for e in evals]) if evals else np.empty(0, np.int64)
        counts = dict.fromkeys(names, 0)
        for img in np.flatnonzero(hit >= 0).tolist():
            r = int(img_row[img])
            if alive[r]:
                s = int(eval_set_of[hit[img]])
                _contaminate(state, alive, r, names[s], evals[s].ids[int(eval_row_of[hit[img]])], counts)
        if evals:
            grams, g_off = _flat(keys, "grams")
            owner = np.repeat(np.arange(n), np.diff(g_off))
            for s, ev in enumerate(evals):
                rows = gram_hits(grams.astype(np.uint64), owner, n, ev)
                for r in np.flatnonzero((rows >= 0) & alive).tolist():
                    _contaminate(state, alive, r, names[s], ev.ids[int(rows[r])], counts)
            if semantic and n_sha:
                vecs, _, inv = _unique_vectors(keys)
                for s, ev in enumerate(evals):
                    best = np.full(vecs.shape[0], -1, np.int64)
                    best_cos = np.zeros(vecs.shape[0], np.float64)
                    for u, e_img, cos in semantic_hits(vecs, ev.image_vectors, threshold=spec.images.threshold):
                        best[u], best_cos[u] = e_img, cos
                    for img in np.flatnonzero(best[inv] >= 0).tolist():
                        r = int(img_row[img])
                        if alive[r]:
                            _contaminate(state, alive, r, names[s], ev.ids[int(ev.image_owner[best[inv[img]]])], counts)
                            state.cosine[r] = round(float(best_cos[inv[img]]), 4)
            state.summary["contaminated"] = counts
            state.summary["against_image_hash"] = {"method": image.method, "max_distance": image.max_distance,
                                                   "hash_size": image.hash_size}
            state.summary["removed"]["contaminated"] = sum(counts.values())

    if spec.text is not None and n:
        text_hash = keys.column("text_hash").to_numpy()
        rep = first_of_groups(text_hash, alive & (text_hash != 0))
        _drop(state, rep, alive, "duplicate_exact", ids)
        if spec.text.method == "minhash":
            from vlmdata.dedup.minhash import dedup_bands, lsh_labels

            t = spec.text
            bands, rows = (t.bands, t.rows) if t.bands and t.rows else dedup_bands(threshold=t.threshold,
                                                                                      num_perm=t.num_perm)
            sig = keys.column("sig").combine_chunks().values.to_numpy().reshape(n, t.num_perm)
            labels = lsh_labels(sig, bands=bands, rows=rows, threshold=t.threshold, active=alive)
            _drop(state, labels, alive, "duplicate_near_text", ids)
            state.summary["minhash"] = {"bands": bands, "rows": rows}

    rank = None
    if semantic and n_sha:
        rep_img, img_rank, vecs_all = _semantic(keys, spec=spec, seed=seed, state=state)
        rank = np.where(n_img > 0, img_rank[np.minimum(sha_off[:-1], n_sha - 1)], 0)
    if spec.images is not None and n:
        q = keys.column("q_hash").to_numpy() if spec.vqa_composite else None
        codes, has = sequence_groups(rep_img, sha_off, q)
        rep = first_of_groups(codes, alive & has, rank)
        reason = "duplicate_vqa" if spec.vqa_composite else "duplicate_image"
        if semantic and n_sha:
            gone = np.flatnonzero(alive & (rep >= 0) & (rep != np.arange(n)))
            first_img = sha_off[:-1]
            cos = np.einsum("ij,ij->i", vecs_all[first_img[gone]].astype(np.float32),
                            vecs_all[first_img[rep[gone]]].astype(np.float32))
            state.cosine.update(zip(gone.tolist(), np.round(cos, 4).tolist(), strict=True))
        _drop(state, rep, alive, reason, ids)
        state.summary["image_clusters"] = int(np.unique(rep_img).size)

    # image_cluster: the sha of the first image's cluster representative ("" for text-only rows)
    first_rep = np.where(n_img > 0, rep_img[np.minimum(sha_off[:-1], max(n_sha - 1, 0))], -1) if n else \
        np.empty(0, np.int64)
    uniq, inv = np.unique(first_rep, return_inverse=True)
    import pyarrow as pa
    import pyarrow.compute as pc

    from vlmdata.steps.dedup import Clusters

    parts = [pa.array([""], pa.string())] if uniq.size and uniq[0] < 0 else []
    if n and uniq.size and uniq[-1] >= 0:
        parts.append(pc.cast(pc.list_flatten(keys.column("img_sha")).take(uniq[uniq >= 0]), pa.string()))
    state.clusters = Clusters(pa.concat_arrays([p.combine_chunks() if isinstance(p, pa.ChunkedArray) else p
                                                for p in parts]) if parts else None)
    state.cluster = inv.ravel()
    state.summary["kept"] = int(alive.sum())
    image_dups = np.flatnonzero(np.isin(state.reason, [CODE["duplicate_image"], CODE["duplicate_vqa"]]))
    from vlmdata.steps.dedup import SHOWN_DUPLICATES

    state.show = set(image_dups[:SHOWN_DUPLICATES].tolist())  # deterministic: the first by _idx
    return state


def _unique_vectors(keys: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, d) vectors of the unique images (by pixel sha), first occurrence of each (u,), and each
    image's unique index (n_images,). Unique indices follow first appearance, so they keep row order."""
    import pyarrow.compute as pc

    sha = pc.list_flatten(keys.column("img_sha")).combine_chunks().dictionary_encode()
    inv = sha.indices.to_numpy().astype(np.int64)
    first = np.full(len(sha.dictionary), inv.size, np.int64)
    np.minimum.at(first, inv, np.arange(inv.size))
    flat = pc.list_flatten(keys.column("img_emb")).combine_chunks().to_numpy(zero_copy_only=False)
    vecs = flat.reshape(inv.size, -1)
    return vecs[first], first, inv


def _semantic(keys: Any, *, spec: DedupSpec, seed: int, state: DedupState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SemDeDup over the unique images → (rep (n_images,) smallest image index of each one's group,
    rank (n_images,) the `keep` order, all images' vectors (n_images, d))."""
    from vlmdata.dedup.semantic import keep_rank, semantic_groups

    im = spec.images
    vecs, first, inv = _unique_vectors(keys)
    groups = semantic_groups(vecs, threshold=im.threshold, clusters=None if im.clusters == "auto" else im.clusters,
                             seed=seed)
    rank_u = keep_rank(groups, keep=im.keep, seed=seed)
    state.summary["semantic"] = {"images": int(vecs.shape[0]), "clusters": groups.clusters, "pairs": groups.pairs,
                                 "groups": int(np.unique(groups.labels).size), "threshold": im.threshold,
                                 "keep": im.keep}
    all_vecs = vecs[inv]
    return first[groups.labels[inv]], rank_u[inv], all_vecs


def semantic_hits(ours: np.ndarray, theirs: np.ndarray | None, *, threshold: float) -> list[tuple[int, int, float]]:
    """(our unique image, eval image, cosine) for each of our images with an eval image at cosine ≥ threshold."""
    if theirs is None or not theirs.size or not ours.size:
        return []
    t = theirs.astype(np.float32)
    out = []
    for lo in range(0, ours.shape[0], 4096):
        s = ours[lo:lo + 4096].astype(np.float32) @ t.T
        best = s.argmax(axis=1)
        val = s[np.arange(s.shape[0]), best]
        out += [(lo + i, int(best[i]), float(val[i])) for i in np.flatnonzero(val >= threshold).tolist()]
    return out


def _contaminate(state: DedupState, alive: np.ndarray, r: int, name: str, eval_id: str,
                 counts: dict[str, int]) -> None:
    state.reason[r] = CODE["contaminated"]
    state.dup_of[r] = eval_id
    state.eval_set[r] = name
    alive[r] = False
    counts[name] += 1
