"""What the tables say, computed from them: one line per claim of issue #6, true or false as measured.

Why generated: a reader should not have to trust prose written before the numbers. Each line states the
claim, the figures it rests on (means over seeds) and whether the claim held; plasticity is shown beside
stability, because a strategy that keeps old tasks by not learning new ones has not done its job.
"""

from __future__ import annotations

import statistics

from experiments import Results, temperature_label


def _mean(values: list[float]) -> float:
    return statistics.mean(values)


def learns(lora: dict[str, list[float]], *, threshold: float = 0.95) -> str:
    tasks = [t for t in lora if t != "mean"]
    passed = [t for t in tasks if _mean(lora[t]) >= threshold]
    rest = ", ".join(f"{t} {_mean(lora[t]):.2f}" for t in tasks if t not in passed)
    ok = "holds" if len(passed) >= 2 else "does NOT hold"
    return (f"(a) {ok}: LoRA reaches ≥ {threshold:.0%} on {len(passed)} task(s) ({', '.join(passed) or 'none'}) "
            f"from 0 for the base model; the others: {rest or 'none'} (compare the most-frequent-answer row).")


def temperature(b: Results, *, budgets: list[int], temperatures: list[float], minority: str,
                majority: str) -> list[str]:
    lines = []
    for steps in budgets:
        ref = b[temperature_label(steps=steps, temperature=1.0)]
        for t in temperatures:
            if t == 1.0:
                continue
            row = b[temperature_label(steps=steps, temperature=t)]
            gain = _mean(row[minority]) - _mean(ref[minority])
            cost = _mean(row[majority]) - _mean(ref[majority])
            ok = "lifts" if gain > 0.02 else "does NOT lift"
            lines.append(f"(b) {steps} steps: T={t:g} {ok} the minority task ({minority} {gain:+.3f} vs T=1); "
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
    naive = d["naive"]
    diag = [k for k in naive if k.startswith("R[")]
    naive_bwt, naive_plasticity = _mean(naive["BWT"]), _mean([_mean(naive[k]) for k in diag])
    lines = []
    for label, row in d.items():
        if label == "naive":
            continue
        bwt, plasticity = _mean(row["BWT"]), _mean([_mean(row[k]) for k in diag])
        ok = "closer to 0 than naive" if abs(bwt) < abs(naive_bwt) else "NOT closer to 0 than naive"
        lines.append(f"(d) {label}: BWT {bwt:+.3f} vs naive {naive_bwt:+.3f}: {ok}; each task right after its "
                     f"stage (mean R[i][i]) {plasticity:.3f} vs naive {naive_plasticity:.3f}.")
    return lines


def summary(*, lora: dict[str, list[float]], b: Results, budgets: list[int], temperatures: list[float],
            c: Results, d: Results, qlora: dict[str, list[float]]) -> str:
    quantised = f"(e) QLoRA − LoRA mean accuracy over the five tasks: {_mean(qlora['mean']) - _mean(lora['mean']):+.3f}."
    lines = [learns(lora), *temperature(b, budgets=budgets, temperatures=temperatures, minority="size",
                                         majority="color"),
             weighting(c), *continual(d), quantised]
    return "\n".join(f"- {line}" for line in lines)
