"""What the tables say, computed from them: one line per claim of issue #6, true or false as measured.

Why generated: a reader should not have to trust prose written before the numbers. Each line states the
claim, the figures it rests on (means over seeds) and whether the claim held; plasticity is shown beside
stability, because a strategy that keeps old tasks by not learning new ones has not done its job.
"""

from __future__ import annotations

import statistics

from experiments import Results


def _mean(values: list[float]) -> float:
    return statistics.mean(values)


def learns(a: Results, *, threshold: float = 0.95) -> str:
    (label, lora), = ((k, v) for k, v in a.items() if k.startswith("LoRA"))
    tasks = [t for t in lora if t != "mean"]
    passed = [t for t in tasks if _mean(lora[t]) >= threshold]
    rest = ", ".join(f"{t} {_mean(lora[t]):.2f}" for t in tasks if t not in passed)
    ok = "holds" if len(passed) >= 2 else "does NOT hold"
    return (f"(a) {ok}: LoRA reaches ≥ {threshold:.0%} on {len(passed)} task(s) ({', '.join(passed) or 'none'}) "
            f"from 0 for the base model; the others: {rest or 'none'} (compare the most-frequent-answer row).")


def temperature(b: Results, *, minority: str, majority: str) -> list[str]:
    lines = []
    budgets = dict.fromkeys(k.split(",")[0] for k in b)
    for budget in budgets:
        rows = {k.split("T=")[1]: v for k, v in b.items() if k.startswith(budget + ",")}
        if "1" not in rows:
            continue
        for t, v in rows.items():
            if t == "1":
                continue
            gain = _mean(v[minority]) - _mean(rows["1"][minority])
            cost = _mean(v[majority]) - _mean(rows["1"][majority])
            ok = "lifts" if gain > 0.02 else "does NOT lift"
            lines.append(f"(b) {budget}: T={t} {ok} the minority task ({minority} {gain:+.3f} vs T=1); "
                         f"majority ({majority}) {cost:+.3f}.")
    return lines


def weighting(c: Results) -> str:
    equal, unc = c["equal"], c["uncertainty"]
    tasks = [t for t in equal if t in unc and not t.startswith("w(")]
    diffs = ", ".join(f"{t} {_mean(unc[t]) - _mean(equal[t]):+.3f}" for t in tasks)
    weights = ", ".join(f"{k} {_mean(v):.2f}" for k, v in unc.items() if k.startswith("w("))
    return (f"(c) uncertainty − equal accuracy: {diffs}; learned weights {weights} (Kendall et al. give the "
            f"larger weight to the task with the smaller loss).")


def continual(d: Results) -> list[str]:
    naive = _mean(d["naive"]["BWT"])
    lines = []
    for label, row in d.items():
        if label == "naive":
            continue
        bwt = _mean(row["BWT"])
        diag = [k for k in row if k.startswith("R[")]
        plasticity = _mean([_mean(row[k]) for k in diag])
        naive_plasticity = _mean([_mean(d["naive"][k]) for k in diag])
        ok = "closer to 0 than naive" if abs(bwt) < abs(naive) else "NOT closer to 0 than naive"
        lines.append(f"(d) {label}: BWT {bwt:+.3f} vs naive {naive:+.3f}: {ok}; each task right after its stage "
                     f"(mean R[i][i]) {plasticity:.3f} vs naive {naive_plasticity:.3f}.")
    return lines


def quantised(e: Results) -> str:
    lora, qlora = (v["mean"] for v in e.values())
    return f"(e) QLoRA − LoRA mean accuracy over the five tasks: {_mean(qlora) - _mean(lora):+.3f}."


def summary(*, a: Results, b: Results, c: Results, d: Results, e: Results) -> str:
    lines = [learns(a), *temperature(b, minority="size", majority="color"), weighting(c), *continual(d),
             quantised(e)]
    return "\n".join(f"- {line}" for line in lines)
