"""`DedupStep.fit`: the key table of every row → a `DedupState` (who goes, why, for whom; clusters).

Kept apart from the step so the step file stays a readable contract; the stage order and the
first-seen rule are described in decide.py.
"""

from __future__ import annotations

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


def fit_dedup(keys: Any, *, spec: DedupSpec, image: ImageDedup, seed: int, workers: int) -> DedupState:
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

    evals = [load_eval_set(p, ngram=spec.against_ngram, method=image.method, hash_size=image.hash_size,
                           workers=workers) for p in spec.against]
    names = [e.name if [x.name for x in evals].count(e.name) == 1 else str(p) for e, p in zip(evals, spec.against, strict=True)]
    rep_img = np.arange(n_sha)
    if "img_hash" in keys.column_names and n:
        hashes, _ = _flat(keys, "img_hash")
        rep_img, hit = image_clusters(hashes.astype(np.uint64), max_distance=image.max_distance, evals=evals)
        if spec.images is None:
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

    if spec.images is not None and n:
        q = keys.column("q_hash").to_numpy() if spec.vqa_composite else None
        codes, has = sequence_groups(rep_img, sha_off, q)
        _drop(state, first_of_groups(codes, alive & has), alive, "duplicate_vqa" if spec.vqa_composite
              else "duplicate_image", ids)
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


def _contaminate(state: DedupState, alive: np.ndarray, r: int, name: str, eval_id: str,
                 counts: dict[str, int]) -> None:
    state.reason[r] = CODE["contaminated"]
    state.dup_of[r] = eval_id
    state.eval_set[r] = name
    alive[r] = False
    counts[name] += 1
