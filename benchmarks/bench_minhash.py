"""MinHash-LSH near-duplicate text detection on 100k short texts: ours vs datasketch and rensa.

    python benchmarks/bench_minhash.py [--n 100000] [--threshold 0.8] [--num-perm 128]

Texts: random 20–30-word sentences; 20% are copies of an earlier one with 1–6 words replaced, so
their Jaccard similarity spreads across the threshold. Truth: a row is a duplicate when an earlier
row's 3-word-shingle set has exact Jaccard >= threshold with it. Baseline, same run and same shingle
sets: datasketch `MinHash.bulk` + `MinHashLSH` (its balanced bands × rows), query each row before inserting
it; and rensa's RMinHash + RMinHashLSH used the same way (Rust, no candidate check). Ours: `MinHasher.signatures` in engine-sized batches + `lsh_labels` with the dedup step's recall-leaning
`dedup_bands` (every candidate is verified against its signature, so extra candidates cost little).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vlmdata.dedup.minhash import MinHasher, dedup_bands, lsh_labels, optimal_bands


def make_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20000)])
    texts, family = [], np.arange(n)
    for i in range(n):
        if i > 100 and rng.random() < 0.2:
            src = int(rng.integers(0, i))
            words = texts[src].split()
            for _ in range(int(rng.integers(1, 7))):
                words[int(rng.integers(0, len(words)))] = str(rng.choice(vocab))
            texts.append(" ".join(words))
            family[i] = family[src]
        else:
            texts.append(" ".join(rng.choice(vocab, int(rng.integers(20, 31)))))
    return texts, family


def shingles(text: str, k: int = 3) -> set[str]:
    w = text.split()
    return {" ".join(w[i:i + k]) for i in range(max(1, len(w) - k + 1))}


def truth(texts: list[str], family: np.ndarray, threshold: float) -> np.ndarray:
    dup = np.zeros(len(texts), dtype=bool)
    members: dict[int, list[int]] = {}
    for i, f in enumerate(family.tolist()):
        s = shingles(texts[i])
        for j in members.get(f, []):
            t = shingles(texts[j])
            if len(s & t) / len(s | t) >= threshold:
                dup[i] = True
                break
        members.setdefault(f, []).append(i)
    return dup


def ours(texts: list[str], threshold: float, num_perm: int) -> np.ndarray:
    mh = MinHasher(num_perm=num_perm, shingle=3, seed=0)
    sig = np.concatenate([mh.signatures(texts[i:i + 256]) for i in range(0, len(texts), 256)])
    b, r = dedup_bands(threshold=threshold, num_perm=num_perm)  # what the dedup step uses
    labels = lsh_labels(sig, bands=b, rows=r, threshold=threshold)
    return labels != np.arange(len(texts))


def datasketch_run(texts: list[str], threshold: float, num_perm: int) -> np.ndarray:
    from datasketch import MinHash, MinHashLSH

    sets = [[s.encode() for s in shingles(t)] for t in texts]
    mhs = MinHash.bulk(sets, num_perm=num_perm)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    dup = np.zeros(len(texts), dtype=bool)
    for i, m in enumerate(mhs):
        dup[i] = bool(lsh.query(m))
        lsh.insert(i, m)
    return dup


def rensa_run(texts: list[str], threshold: float, num_perm: int) -> np.ndarray:
    """rensa (Rust): RMinHash per text + RMinHashLSH, query each row before inserting it (its README's use)."""
    from rensa import RMinHash, RMinHashLSH

    # rensa needs num_perm divisible by num_bands: the divisor nearest the balanced choice
    best, _ = optimal_bands(threshold=threshold, num_perm=num_perm)
    b = min((d for d in range(1, num_perm + 1) if num_perm % d == 0), key=lambda d: abs(d - best))
    lsh = RMinHashLSH(threshold=threshold, num_perm=num_perm, num_bands=b)
    dup = np.zeros(len(texts), dtype=bool)
    for i, t in enumerate(texts):
        m = RMinHash(num_perm=num_perm, seed=42)
        m.update(list(shingles(t)))
        dup[i] = bool(lsh.query(m))
        lsh.insert(i, m)
    return dup


def score(pred: np.ndarray, true: np.ndarray) -> str:
    tp = int((pred & true).sum())
    return f"precision {tp / max(1, pred.sum()):.4f}  recall {tp / max(1, true.sum()):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    args = ap.parse_args()
    texts, family = make_texts(args.n, 0)
    true = truth(texts, family, args.threshold)
    times: dict[str, list[float]] = {"ours": [], "datasketch": [], "rensa": []}
    preds = {}
    runs = {"ours": ours, "datasketch": datasketch_run, "rensa": rensa_run}
    for name in ("ours", "datasketch", "rensa", "ours"):  # interleaved: load changes hit all
        fn = runs[name]
        t = time.perf_counter()
        preds[name] = fn(texts, args.threshold, args.num_perm)
        times[name].append(time.perf_counter() - t)
    b, r = optimal_bands(threshold=args.threshold, num_perm=args.num_perm)
    ob, orr = dedup_bands(threshold=args.threshold, num_perm=args.num_perm)
    print(f"{args.n:,} texts, {int(true.sum()):,} true duplicates (J >= {args.threshold}); datasketch {b} bands x {r} "
          f"rows, ours {ob} x {orr} (+ signature check)")
    base, mine = times["datasketch"][0], float(np.mean(times["ours"]))
    print(f"datasketch (baseline): {base:6.2f} s  {score(preds['datasketch'], true)}")
    rensa = times["rensa"][0]
    print(f"rensa (baseline 2)   : {rensa:6.2f} s  {score(preds['rensa'], true)}")
    print(f"vlmdata minhash      : {mine:6.2f} s  {score(preds['ours'], true)}")
    print(f"ratio: {base / mine:.1f}x datasketch, {rensa / mine:.2f}x rensa")


if __name__ == "__main__":
    main()
