"""The embedding model: images and texts → L2-normalised float32 vectors. Imports torch (the
`[embed]` extra); nothing else in vlmdata imports this module at import time.

transformers: `AutoModel` + `AutoProcessor` from a local save_pretrained folder (CLIP, SigLIP,
SigLIP2 and anything with `get_image_features` / `get_text_features`). SigLIP's text tower was
trained on max-length padding, so texts are padded that way when the processor says so.
open_clip: `create_model_and_transforms(name, pretrained=<local file>)` when it is installed.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from vlmdata.embed.spec import EmbedSpec


def _features(out: Any) -> Any:
    """transformers ≥ 5 returns a model output with the projected `pooler_output`; older ones a tensor."""
    return out if hasattr(out, "shape") else out.pooler_output


class Embedder:
    """Loaded once per build (on first cache miss), in the driver process."""

    def __init__(self, *, spec: EmbedSpec) -> None:
        import torch  # only here: the embed stage is the one part of vlmdata that needs torch

        self.spec = spec
        self.torch = torch
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if spec.device == "auto" else spec.device
        if spec.backend == "open_clip":
            import open_clip

            model, _, preprocess = open_clip.create_model_and_transforms(spec.model, pretrained=str(spec.weights))
            self.model = model.to(self.device).eval()
            self.preprocess = preprocess
            self.tokenizer = open_clip.get_tokenizer(spec.model)
            self.processor = None
        else:
            from transformers import AutoModel, AutoProcessor

            self.model = AutoModel.from_pretrained(spec.model).to(self.device).eval()
            self.processor = AutoProcessor.from_pretrained(spec.model)
            self.max_length_padding = "siglip" in type(self.model).__name__.lower()

    def images(self, blobs: list[bytes]) -> np.ndarray:
        """(n, d) unit float32 vectors, batched."""
        from PIL import Image

        out = []
        for lo in range(0, len(blobs), self.spec.batch_size):
            ims = []
            for b in blobs[lo:lo + self.spec.batch_size]:
                with Image.open(io.BytesIO(b)) as im:
                    ims.append(im.convert("RGB"))
            with self.torch.inference_mode():
                if self.processor is None:
                    pix = self.torch.stack([self.preprocess(im) for im in ims]).to(self.device)
                    feats = self.model.encode_image(pix)
                else:
                    # every processor output: SigLIP2's naflex processor adds a patch mask and spatial shapes
                    inputs = self.processor(images=ims, return_tensors="pt").to(self.device)
                    feats = _features(self.model.get_image_features(**inputs))
            out.append(feats.float().cpu().numpy())
        return _unit(np.concatenate(out) if out else np.zeros((0, 0), np.float32))

    def texts(self, texts: list[str]) -> np.ndarray:
        out = []
        for lo in range(0, len(texts), self.spec.batch_size):
            part = texts[lo:lo + self.spec.batch_size]
            with self.torch.inference_mode():
                if self.processor is None:
                    feats = self.model.encode_text(self.tokenizer(part).to(self.device))
                else:
                    tok = self.processor.tokenizer
                    enc = tok(part, padding="max_length" if self.max_length_padding else True, truncation=True,
                              max_length=min(getattr(tok, "model_max_length", 77) or 77,
                                             self._max_positions()), return_tensors="pt").to(self.device)
                    kw = {"input_ids": enc["input_ids"]}
                    if "attention_mask" in enc and not self.max_length_padding:
                        kw["attention_mask"] = enc["attention_mask"]
                    feats = _features(self.model.get_text_features(**kw))
            out.append(feats.float().cpu().numpy())
        return _unit(np.concatenate(out) if out else np.zeros((0, 0), np.float32))

    def _max_positions(self) -> int:
        cfg = getattr(self.model.config, "text_config", None)
        return int(getattr(cfg, "max_position_embeddings", 77) or 77)


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True) if x.size else np.ones((x.shape[0], 1), np.float32)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)
