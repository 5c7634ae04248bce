"""Per-component tuning: what is frozen, LoRA ranks per component, optimizer groups and their lrs."""

from __future__ import annotations

import pytest
from tiny_cache import config_text, tiny_dir

from vlmdata.config.errors import ConfigError

COMPONENTS = """
components:
  projector: {train: full, lr: 1.0e-3}
  llm: {train: lora, r: 8, alpha: 16, targets: [q_proj, v_proj], lr: 2.0e-4}
train: {steps: 2, weight_decay: 0.1, device: cpu}
"""


def _config(body, *, data, write_config, tmp_path):
    from vlmtrain.config.train import load_train_config

    return load_train_config(write_config(config_text(model=tiny_dir("llava"), data=data, out=tmp_path / "r", body=body)))


def test_optimizer_groups_follow_the_components(colour_dataset, write_config, tmp_path):
    from vlmtrain.recipes.finetune import FinetuneRecipe

    lines: list[str] = []
    recipe = FinetuneRecipe(config=_config(COMPONENTS, data=colour_dataset, write_config=write_config,
                                           tmp_path=tmp_path), echo=lines.append)
    recipe.setup()
    optimizer = recipe.trainer.create_optimizer()
    names = {id(p): n for n, p in recipe.model.named_parameters()}
    by_component: dict[str, set[float]] = {}
    for group in optimizer.param_groups:
        by_component.setdefault(group["component"], set()).add(group["lr"])
        for p in group["params"]:
            name = names[id(p)]
            assert "vision_tower" not in name  # frozen: in no group
            is_vector = p.ndim < 2
            assert group["weight_decay"] == (0.0 if is_vector or "norm" in name else 0.1), name
    assert by_component == {"projector": {1e-3}, "llm": {2e-4}}
    trainable = {n for n, p in recipe.model.named_parameters() if p.requires_grad}
    assert any("multi_modal_projector.linear_1.bias" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable if "lora_A" in n} == {"q_proj", "v_proj"}
    table = next(line for line in lines if line.startswith("component"))
    assert "projector" in table and "1.0e-03" in table and "lora r=8" in table and "2.0e-04" in table


def test_rank_pattern_gives_each_component_its_own_r(colour_dataset, write_config, tmp_path):
    from vlmtrain.models.build import build_model

    body = COMPONENTS.replace("components:\n", "components:\n  vision: {train: lora, r: 2, alpha: 4, targets: [q_proj], lr: 1.0e-6}\n")
    built = build_model(config=_config(body, data=colour_dataset, write_config=write_config, tmp_path=tmp_path))
    shapes = {n: tuple(p.shape) for n, p in built.model.named_parameters() if "lora_A" in n}
    vision = [s for n, s in shapes.items() if ".vision_tower." in n]
    llm = [s for n, s in shapes.items() if ".language_model." in n]
    assert vision and all(s[0] == 2 for s in vision)  # (r, in_features)
    assert llm and all(s[0] == 8 for s in llm)
    lrs = {g["component"]: g["lr"] for g in built.groups}
    assert lrs == {"vision": 1e-6, "projector": 1e-3, "llm": 2e-4}


def test_old_lora_section_still_means_lora_on_the_llm(colour_dataset, write_config, tmp_path):
    cfg = _config("lora: {r: 4}\n", data=colour_dataset, write_config=write_config, tmp_path=tmp_path)
    plan = cfg.plan()
    assert (plan["llm"].train, plan["llm"].r, plan["llm"].lr) == ("lora", 4, cfg.train.lr)
    assert plan["vision"].train == plan["projector"].train == "frozen"


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ("components: {llm: {trian: lora}}\n", "components.llm.trian", "did you mean 'train'"),
        ("components: {llm: {train: frozen}}\n", "components", "nothing trains"),
        ("method: full\ncomponents: {llm: {train: lora}}\n", "components.llm.train", "without adapters"),
        ("method: qlora\ncomponents: {llm: {train: full}}\n", "components.llm.train", "cannot train fully"),
        ("quant: {bits: 4}\n", "quant", "only with method: qlora"),
        ("method: qlora\nquant: {bits: 3}\n", "quant.bits", ""),
        ("method: qlora\ncomponents: {projector: {train: full}}\n", "components", "needs a LoRA adapter"),
        ("method: qlora\nstages:\n  - {name: p, components: {projector: {train: full}}}\n"
         "  - {name: s, components: {llm: {train: lora}}}\n", "stages[0].components", "use method: lora"),
    ],
)
def test_component_config_problems_name_the_key(body, path, message, colour_dataset, write_config, tmp_path):
    with pytest.raises(ConfigError) as err:
        _config(body, data=colour_dataset, write_config=write_config, tmp_path=tmp_path)
    problems = {p.path: p.message for p in err.value.problems}
    assert path in problems and message in problems[path], problems
