"""Recipe-wide checks of `preference: from: judge` (run with the recipe's other cross checks), and its two
request jobs for the redactor.

- a call with `max_cost_usd` needs a price (the table in synth/cost.py, or the call's `prices`).
(`tasks` is not checked here: a row's task may come from its own data, e.g. a jsonl `task` column.)
"""

from __future__ import annotations

from vlmdata.config.errors import Problem
from vlmdata.steps.preference import PreferenceSpec
from vlmdata.synth.cost import price_for
from vlmdata.synth.judge_spec import PreferenceCall, preference_jobs


def preference_calls(*, spec: PreferenceSpec | None, seed: int) -> list[PreferenceCall]:
    """The request jobs of `from: judge` (none for the other modes)."""
    if spec is None or spec.candidates is None or spec.judge is None:
        return []
    return list(preference_jobs(candidates=spec.candidates, judge=spec.judge, seed=seed).values())


def preference_cross_checks(*, spec: PreferenceSpec | None, seed: int) -> list[Problem]:
    if spec is None or spec.from_ != "judge":
        return []
    problems: list[Problem] = []
    for call in preference_calls(spec=spec, seed=seed):
        if call.max_cost_usd is not None and price_for(call.model, call.prices) is None:
            problems.append(Problem(f"{call.name}.max_cost_usd",
                                    f"no price known for model '{call.model}': add `prices: {{input_per_mtok: ..., "
                                    f"output_per_mtok: ...}}` to {call.name}"))
    return problems
