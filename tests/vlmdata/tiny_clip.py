"""Tiny random CLIP and SigLIP models, built offline from config objects with their real processor
classes and a locally trained tokenizer, saved with save_pretrained (what `embed.model` points at)."""

from __future__ import annotations

from pathlib import Path


def _tokenizer():
    from vlmtrain.models.tiny.tokenizer import train_tokenizer

    return train_tokenizer(extra_special_tokens={})


def write_tiny_clip(out: Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = _tokenizer()
    config = CLIPConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "max_position_embeddings": 64, "bos_token_id": tok.bos_token_id,
                     "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                            crop_size={"height": 32, "width": 32}), tokenizer=tok)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def write_tiny_siglip(out: Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    tok = _tokenizer()
    config = SiglipConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "max_position_embeddings": 16, "pad_token_id": tok.pad_token_id,
                     "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": 32, "patch_size": 8},
    )
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    tok.model_max_length = 16
    proc = SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


TINY_OPEN_CLIP = {"embed_dim": 16,
                  "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
                  "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


def write_tiny_open_clip(out: Path, *, seed: int = 0) -> tuple[str, Path]:
    """A tiny open_clip architecture registered under the name `vlmdata-tiny` (in this process), and its
    random weights saved as a local checkpoint: (model name, checkpoint path)."""
    import json

    import open_clip
    import torch

    out.mkdir(parents=True, exist_ok=True)
    (out / "vlmdata-tiny.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(out / "vlmdata-tiny.json")
    torch.manual_seed(seed)
    model = open_clip.create_model("vlmdata-tiny")
    torch.save(model.state_dict(), out / "tiny.pt")
    return "vlmdata-tiny", out / "tiny.pt"


def write_tiny_siglip2(out: Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor

    tok = _tokenizer()
    config = Siglip2Config(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "max_position_embeddings": 16, "pad_token_id": tok.pad_token_id,
                     "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "patch_size": 16, "num_patches": 256},  # Siglip2Processor's own defaults (16 px, 256)
    )
    torch.manual_seed(seed)
    model = Siglip2Model(config).eval()
    tok.model_max_length = 16
    proc = Siglip2Processor(image_processor=Siglip2ImageProcessor(patch_size=16, max_num_patches=256), tokenizer=tok)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out
