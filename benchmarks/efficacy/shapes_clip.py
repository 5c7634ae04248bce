"""A tiny CLIP that has learned the shapes world: the embedding model of the dedup efficacy experiment.

Why train one: a random tiny CLIP's vectors mean nothing, and no pretrained model can be downloaded
here, so semantic dedup would be judged on noise. This one is a real `CLIPModel` (vision tower: ViT,
32 px, patch 8; text tower on the offline tiny tokenizer), trained for a few hundred CPU steps on
scenes of *another seed* than the benchmark's world (none of the evaluated images is ever seen), and
saved with save_pretrained + CLIPProcessor, so vlmdata's `embed:` stage loads it like any CLIP.

Two losses, both contrastive (InfoNCE over the batch, both directions):
- `caption`: image against its scene caption ("on grey: a large red circle at top left; ..."), what
  CLIP does with web captions;
- `views` (on by default): two independent re-drawings of one scene (`shapes.jitter`, the shifts and
  colour changes the planted near-duplicates also get) against each other, as copy-detection
  embeddings (SSCD, SimCLR) are trained with augmentations, with a hard negative per scene: the same
  shapes moved by 4-8 px (farther than a near-duplicate moves). Without it the vectors know *what* is
  in a scene but not exactly *where*, so different scenes with one caption collide.
Every random choice is seeded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from vlmdata.sources.shapes import BACKGROUNDS, NearDuplicates, ShapesSpec, draw, jitter, read_shapes

BACKGROUND_NAMES = dict(zip(BACKGROUNDS, ("white", "grey", "black"), strict=True))
TASKS = ["color", "shape", "size", "count", "position", "relation", "caption"]


def caption(*, shapes: list[dict[str, Any]], background: tuple[int, ...], size: int) -> str:
    """The scene in words: background, then each shape (size, colour, kind, cell of a 3×3 grid), left to right."""
    def cell(box: list[int]) -> str:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return f"{('top', 'middle', 'bottom')[min(int(cy * 3 // size), 2)]} {('left', 'centre', 'right')[min(int(cx * 3 // size), 2)]}"

    parts = [f"a {s['size']} {s['color']} {s['kind']} at {cell(s['box'])}" for s in sorted(shapes, key=lambda s: s["box"][0])]
    return f"on {BACKGROUND_NAMES.get(tuple(background), 'colour')}: " + "; ".join(parts)


def _scenes(*, count: int, seed: int, size: int) -> list[tuple[list[dict[str, Any]], tuple[int, ...], str]]:
    spec = ShapesSpec(name="clip-train", count=count, tasks=TASKS, image_size=size, max_count=3, seed=seed)
    out = []
    for r in read_shapes(spec):
        if hasattr(r, "context"):
            bg = tuple(r.context["background"])
            out.append((r.context["scene"], bg, caption(shapes=r.context["scene"], background=bg, size=size)))
    return out


def write_shapes_clip(*, out: Path, steps: int = 500, batch: int = 96, seed: int = 1000, image_size: int = 32,
                      views: bool = True, lr: float = 2e-3, echo: Any = print) -> Path:
    """Train and save the model at `out` (skipped when out/config.json exists); returns `out`."""
    if (out / "config.json").is_file():
        return out
    import torch
    from PIL import Image
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from vlmtrain.models.tiny.tokenizer import train_tokenizer

    torch.set_num_threads(1)  # on a shared 2-core box two threads spin against other jobs: 30x slower per step
    torch.manual_seed(seed)
    rng = random.Random(seed)
    tok = train_tokenizer(extra_special_tokens={})
    config = CLIPConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "max_position_embeddings": 96, "bos_token_id": tok.bos_token_id,
                     "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": image_size, "patch_size": 8},
        projection_dim=64,
    )
    model = CLIPModel(config)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}), tokenizer=tok)
    scenes = _scenes(count=600, seed=seed, size=image_size)  # 7 tasks × 600 = 4200 scenes
    near, far = NearDuplicates(), NearDuplicates(shift=8, side=2)
    n_views, n_far = 4, 2

    def pixels(blobs: list[bytes]) -> torch.Tensor:
        import io

        ims = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs]
        return processor.image_processor(images=ims, return_tensors="pt")["pixel_values"]

    # every scene re-drawn n_views times, each view rendered once and kept as processor output
    task_of = [TASKS[i // 600] for i in range(len(scenes))]
    blobs = []
    for i, (shapes, bg, _) in enumerate(scenes):
        for v in range(n_views):
            js, jbg = jitter(shapes=shapes, background=bg, task=task_of[i], size=image_size, near=near,
                             rng=random.Random(f"{seed}:{i}:{v}"))
            blobs.append(draw(shapes=js, size=image_size, background=jbg))
    pix = pixels(blobs).view(len(scenes), n_views, 3, image_size, image_size)
    hard = []
    for i, (shapes, bg, _) in enumerate(scenes):
        for v in range(n_far):
            r = random.Random(f"{seed}:{i}:far{v}")
            for _ in range(10):  # moved farther than a near-duplicate may move: at least 4 px somewhere
                js, jbg = jitter(shapes=shapes, background=bg, task=task_of[i], size=image_size, near=far, rng=r)
                if max(abs(a - b) for s0, s1 in zip(shapes, js, strict=True)
                       for a, b in zip(s0["box"], s1["box"], strict=True)) >= 4:
                    break
            hard.append(draw(shapes=js, size=image_size, background=jbg))
    hard_pix = pixels(hard).view(len(scenes), n_far, 3, image_size, image_size)
    enc = tok([c for *_, c in scenes], padding=True, return_tensors="pt")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    target = torch.arange(batch)

    def nce(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = a @ b.T * model.logit_scale.exp().clamp(max=100)
        return (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2

    def unit(x: Any) -> torch.Tensor:
        x = x if hasattr(x, "shape") else x.pooler_output
        return torch.nn.functional.normalize(x, dim=-1)

    model.train()
    for step in range(steps):
        idx = torch.tensor(rng.sample(range(len(scenes)), batch))
        va, vb = (torch.tensor([rng.randrange(n_views) for _ in range(batch)]) for _ in range(2))
        a = unit(model.get_image_features(pixel_values=pix[idx, va]))
        t = unit(model.get_text_features(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx]))
        loss = nce(a, t)
        if views:
            b = unit(model.get_image_features(pixel_values=pix[idx, vb]))
            c = unit(model.get_image_features(
                pixel_values=hard_pix[idx, torch.tensor([rng.randrange(n_far) for _ in range(batch)])]))
            logits = a @ torch.cat([b, c]).T * model.logit_scale.exp().clamp(max=100)
            loss = loss + torch.nn.functional.cross_entropy(logits, target) + nce(b, a) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            echo(f"  shapes-clip step {step}: loss {loss.item():.3f}")
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "shapes_clip.json").write_text(json.dumps(  # what it was trained on: another seed than the benchmark's
        {"seed": seed, "steps": steps, "batch": batch, "views": views, "scenes": len(scenes), "last_loss": loss.item()}))
    return out
