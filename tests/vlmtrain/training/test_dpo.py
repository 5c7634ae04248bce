"""DPO: our loss and rewards equal TRL's on the same batch; the reference is the base model; configs; a run."""

from __future__ import annotations

import json

import pytest
import torch
from pair_rows import colour_pairs, pair_row, save_pairs
from tiny_cache import tiny_dir

from vlmdata.config.errors import ConfigError
from vlmdata.schema import features, image_part, message, text_part, trl_preference


def _collator(processor):
    from vlmtrain.data.collate import ChatCollator
    from vlmtrain.models.families import family_of
    from vlmtrain.training.dpo import PairCollator

    return PairCollator(chat=ChatCollator(processor=processor, max_length=512, family=family_of("llava")))


def test_dpo_loss_and_rewards_equal_trl_and_the_reference_is_the_base_model(tmp_path):
    import datasets
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer

    from vlmtrain.training.dpo import dpo_loss, pair_logps, sequence_logps

    folder = tiny_dir("llava")
    processor = AutoProcessor.from_pretrained(str(folder))
    rows = colour_pairs()
    dataset = datasets.Dataset.from_list(rows, features=features(preference=True))
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(str(folder)),  # a non-zero adapter
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.eval()
    batch = _collator(processor)(list(dataset))
    reference, tokens = pair_logps(model=model, batch=batch, reference=True)
    policy, _ = pair_logps(model=model, batch=batch, reference=False)
    assert (tokens > 0).all() and not torch.allclose(policy, reference)

    base = AutoModelForImageTextToText.from_pretrained(str(folder)).eval()  # separately loaded
    with torch.no_grad():
        base_logps, _ = sequence_logps(logits=base(**{k: v for k, v in batch.items() if k != "labels"}).logits,
                                       labels=batch["labels"])
    torch.testing.assert_close(reference, base_logps, atol=1e-5, rtol=0)

    # TRL reads our rows (prompt column renamed) into exactly our tokens and our answer mask
    trainer = DPOTrainer(model=model, ref_model=base, processing_class=processor, train_dataset=trl_preference(dataset),
                         args=DPOConfig(output_dir=str(tmp_path), beta=0.1, loss_type=["sigmoid"], report_to=[],
                                        use_cpu=True, bf16=False, max_length=None))
    trl_batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    completion = (batch["labels"] != -100).long()
    assert torch.equal(trl_batch["input_ids"], batch["input_ids"])
    assert torch.equal(trl_batch["completion_mask"], completion)

    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "pixel_values": batch["pixel_values"], "completion_mask": completion}
    for loss_type, beta in (("sigmoid", 0.1), ("hinge", 0.5), ("ipo", 0.3)):
        trainer.loss_types, trainer.beta = [loss_type], beta
        with torch.no_grad():
            theirs = trainer._compute_loss(trainer.model, inputs, False)
        ours, metrics = dpo_loss(policy=policy, reference=reference, tokens=tokens, beta=beta, loss_type=loss_type)
        assert abs(float(ours) - float(theirs)) < 1e-4, loss_type
        for name, value in metrics.items():
            assert abs(value - trainer._metrics["eval"][name][-1]) < 1e-4, (loss_type, name)
    # RPO: DPO + a weighted NLL of the chosen answers (TRL: loss types sigmoid + sft with loss weights)
    trainer.loss_types, trainer.loss_weights, trainer.beta = ["sigmoid", "sft"], [1.0, 0.7], 0.1
    with torch.no_grad():
        theirs = trainer._compute_loss(trainer.model, inputs, False)
    ours, _ = dpo_loss(policy=policy, reference=reference, tokens=tokens, beta=0.1, loss_type="sigmoid",
                       sft_weight=0.7)
    plain, _ = dpo_loss(policy=policy, reference=reference, tokens=tokens, beta=0.1, loss_type="sigmoid")
    assert abs(float(ours) - float(theirs)) < 1e-4 and abs(float(ours) - float(plain)) > 1e-2


def test_label_smoothing_is_conservative_dpo():
    from vlmtrain.training.dpo import dpo_loss

    policy, reference = torch.tensor([-1.0, -3.0, -2.0, -1.0]), torch.tensor([-2.0, -2.0, -2.0, -2.0])
    tokens = torch.tensor([2, 2, 3, 3])
    delta = torch.tensor([(-1.0 + 2.0) - (-2.0 + 2.0), (-3.0 + 2.0) - (-1.0 + 2.0)])
    eps, beta = 0.2, 0.5
    expected = (-(1 - eps) * torch.nn.functional.logsigmoid(beta * delta)
                - eps * torch.nn.functional.logsigmoid(-beta * delta)).mean()
    loss, metrics = dpo_loss(policy=policy, reference=reference, tokens=tokens, beta=beta, loss_type="sigmoid",
                             label_smoothing=eps)
    assert abs(float(loss) - float(expected)) < 1e-6
    assert metrics["rewards/accuracies"] == 0.5 and metrics["rewards/chosen"] == pytest.approx(0.5 * (1.0 - 1.0) / 2)


def test_only_the_final_answer_counts_in_a_multi_turn_prompt():
    from vlmtrain.training.dpo import keep_last_answer

    labels = torch.tensor([[-100, 5, 6, -100, -100, 7, 8, -100], [-100, -100, 3, 4, -100, -100, -100, -100]])
    assert keep_last_answer(labels).tolist() == [[-100] * 5 + [7, 8, -100], [-100, -100, 3, 4] + [-100] * 4]


def test_pair_collator_refuses_sft_rows(llava_processor):
    from train_rows import vqa_row

    with pytest.raises(ValueError, match="not a preference row"):
        _collator(llava_processor)([vqa_row(colour="red")])


def test_method_dpo_and_stage_configs(write_config, colour_dataset, tiny_llava):
    from vlmtrain.config.train import load_train_config

    head = f"name: t\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {colour_dataset}}}\n"
    cfg = load_train_config(write_config(head + "method: dpo\n"))
    assert cfg.method == "lora" and cfg.dpo is not None and cfg.dpo.beta == 0.1
    bad = head + ("dpo: {beta: 0, loss_type: kto}\nstages:\n  - name: a\n    method: dpo\n"
                  "    components: {projector: {train: full}}\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(write_config(bad))
    text = str(err.value)
    assert "dpo.beta" in text and "dpo.loss_type" in text
    assert load_train_config(write_config(head + "method: dpo\ndpo: {sft_weight: 0.5}\n")).dpo.sft_weight == 0.5
    with pytest.raises(ConfigError, match="dpo.sft_weight"):
        load_train_config(write_config(head + "method: dpo\ndpo: {sft_weight: -1}\n"))
    with pytest.raises(ConfigError) as err:
        load_train_config(write_config(head + "stages:\n  - name: a\n    method: dpo\n"
                                       "    components: {projector: {train: full}}\n"))
    assert "stages[0].components.projector.train" in str(err.value)


@pytest.mark.slow
def test_three_stages_projector_sft_dpo_run_end_to_end(colour_dataset, tmp_path):
    from click.testing import CliRunner

    from vlmtrain.cli import main

    pairs = save_pairs(path=tmp_path / "pairs", splits={"train": colour_pairs() * 2,
                                                        "validation": [pair_row(colour="red", wrong="green")]})
    run_dir = tmp_path / "run"
    recipe = __import__("pathlib").Path(__file__).resolve().parents[3] / "recipes" / "train" / "shapes-dpo.yaml"
    sets = [f"model.path={tiny_dir('llava')}", f"data.path={colour_dataset}", f"stages.0.data.path={colour_dataset}",
            f"stages.2.data.path={pairs}", f"output.dir={run_dir}", "stages.0.train.steps=2",
            "stages.1.train.steps=2", "stages.2.train.steps=4", "stages.2.dpo.eval_every=2", "train.log_every=1",
            "train.report_to=[tensorboard]", f"eval={{every: 2, data: {colour_dataset}, limit: 2, max_new_tokens: 2}}"]
    args = ["run", str(recipe)]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    stage = run_dir / "stages" / "03-dpo"
    lines = [json.loads(line) for line in (stage / "log.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "loss" in r]
    assert len(steps) == 4
    for r in steps:
        for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
            assert name in r
        assert r["rewards/margins"] == pytest.approx(r["rewards/chosen"] - r["rewards/rejected"], abs=1e-5)
    evals = [r for r in lines if "preference_eval" in r]
    assert [r["step"] for r in evals] == [0, 2, 4]
    first = evals[0]["preference_eval"]
    assert (first["rewards/accuracies"], first["rewards/margins"], first["pairs"]) == (0.0, 0.0, 1)  # policy = reference
    assert first["logps/accuracies"] in (0.0, 1.0)
    vqa = [r for r in lines if "eval" in r]  # `eval:` on a VQA split: what alignment cost
    assert [r["step"] for r in vqa] == [0, 2, 4] and "overall" in vqa[-1]["eval"]  # step 0: before alignment
    said = [line for line in result.output.splitlines() if line.startswith("step ") and "preference accuracy" in line]
    assert [line.split(":")[0] for line in said] == ["step 0", "step 2", "step 4"]  # both, side by side
    assert "step | rewards/accuracies | logps/accuracies | rewards/margins | VQA accuracy" in result.output
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set(EventAccumulator(str(stage / "tensorboard")).Reload().Tags()["scalars"])
    assert {"train/rewards/chosen", "train/rewards/rejected", "train/rewards/margins", "train/rewards/accuracies",
            "eval/preference/rewards/accuracies", "eval/vqa_accuracy"} <= tags, tags
    assert list((stage / "tensorboard").iterdir())
    assert json.loads((stage / "chain.json").read_text()) == ["../01-projector", "../02-sft"]
    assert (run_dir / "adapter_model.safetensors").is_file()


def test_prompt_must_end_with_user_turn_in_trl_view():
    row = pair_row(colour="red", wrong="blue")
    assert row["messages"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert message("user", [image_part(), text_part("q")])["content"][0]["type"] == "image"


def test_qlora_dpo_trains_the_adapter_and_logs_rewards(write_config, tmp_path):
    from tiny_cache import config_text

    from vlmtrain.config.train import load_train_config
    from vlmtrain.recipes.dpo import DpoRecipe

    pairs = save_pairs(path=tmp_path / "pairs", splits={"train": colour_pairs() * 2})
    body = ("method: qlora\nquant: {bits: 4, quant_type: nf4}\nlora: {r: 8, alpha: 16, dropout: 0.0}\n"
            "dpo: {beta: 0.5, loss_type: sigmoid}\n"
            "train: {steps: 3, batch_size: 4, lr: 5.0e-2, scheduler: constant, device: cpu, log_every: 1}\n")
    path = write_config(config_text(model=tiny_dir("llava"), data=pairs, out=tmp_path / "run", body=body))
    recipe = DpoRecipe(config=load_train_config(path), echo=lambda _: None)
    recipe.setup()
    assert any(type(m).__name__ == "Linear4bit" for m in recipe.model.modules())
    before = {n: p.detach().clone() for n, p in recipe.model.named_parameters() if "lora_B" in n}
    recipe.train()
    after = dict(recipe.model.named_parameters())
    assert before and all(not torch.equal(before[n], after[n].detach()) for n in before)  # every lora_B moved
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all("rewards/accuracies" in r for r in log)
    assert log[-1]["rewards/margins"] > 0  # three steps on four pairs: chosen already ahead


@pytest.mark.parametrize("family", ["qwen2_vl", "idefics3", "paligemma"])
def test_every_family_scores_pairs_on_the_answer_and_its_reference_is_the_base(family):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from vlmtrain.data.collate import ChatCollator
    from vlmtrain.models.families import family_of
    from vlmtrain.training.dpo import PairCollator, pair_logps, sequence_logps

    folder = tiny_dir(family)
    processor = AutoProcessor.from_pretrained(str(folder))
    fam = family_of(AutoConfig.from_pretrained(str(folder)).model_type)
    rows = colour_pairs()[:2]
    batch = PairCollator(chat=ChatCollator(processor=processor, max_length=1024, family=fam))(rows)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(str(folder)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.eval()
    reference, tokens = pair_logps(model=model, batch=batch, reference=True)
    policy, _ = pair_logps(model=model, batch=batch, reference=False)
    assert (tokens > 0).all() and torch.isfinite(policy).all() and not torch.allclose(policy, reference)
    base = AutoModelForImageTextToText.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        logits = base(**{k: v for k, v in batch.items() if k != "labels"}).logits
    torch.testing.assert_close(reference, sequence_logps(logits=logits, labels=batch["labels"])[0], atol=1e-5, rtol=0)
    answers = [processor.tokenizer.decode(batch["input_ids"][b][batch["labels"][b] != -100]) for b in range(4)]
    for text, expected in zip(answers, ["red", "green", "green", "blue"], strict=True):
        assert text.strip().startswith(expected), (family, answers)


def test_a_pair_too_long_for_max_length_is_listed_not_cut(write_config, tmp_path):
    from tiny_cache import config_text

    from vlmtrain.config.train import load_train_config
    from vlmtrain.recipes.dpo import DpoRecipe

    long = pair_row(colour="red", wrong="blue " * 150)
    pairs = save_pairs(path=tmp_path / "pairs", splits={"train": [*colour_pairs(), long]})
    body = "method: dpo\ntrain: {steps: 1, batch_size: 2, device: cpu}\n"  # config_text: max_length 128
    path = write_config(config_text(model=tiny_dir("llava"), data=pairs, out=tmp_path / "run", body=body))
    said: list[str] = []
    recipe = DpoRecipe(config=load_train_config(path), echo=said.append)
    recipe.setup()
    assert len(recipe.dataset) == 4 and long["id"] not in recipe.dataset["id"]
    listed = [json.loads(line) for line in (tmp_path / "run" / "rejected_rows.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in listed] == [(long["id"], "answer_cut")] and listed[0]["tokens"] > 128
    assert any("rejected 1 of 5 pairs" in line for line in said)
