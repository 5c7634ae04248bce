"""`embed:` — which model turns images (and texts) into vectors, and how.

    embed:
      model: models/clip-vit-b32        # a local folder (save_pretrained); nothing is downloaded
      backend: auto                     # transformers | open_clip | auto (= transformers)
      batch_size: 64
      device: auto                      # auto = cuda when there is one, else cpu

`open_clip` backend: `model` is the architecture name (e.g. ViT-B-32) and `weights` the local
checkpoint file. Steps that need vectors (`dedup.images.method: semantic`, the `clip_score` filter)
require this section; the recipe check says so with the YAML path.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from vlmdata.config.path_types import ExistingPath, resolve


class EmbedSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["auto", "transformers", "open_clip"] = "auto"
    model: str = Field(min_length=1)
    weights: ExistingPath | None = None  # open_clip only: the checkpoint file
    batch_size: int = Field(default=64, ge=1, le=4096)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("model")
    @classmethod
    def _model_folder(cls, value: str, info: ValidationInfo) -> str:
        """A transformers model is a local save_pretrained folder, resolved against the recipe's folder."""
        if info.data.get("backend") == "open_clip":
            return value
        path = resolve(value, info)
        if not path.is_dir():
            raise ValueError(f"model folder not found: {path} (save one with model.save_pretrained and "
                             "processor.save_pretrained; hub names are never fetched at build time)")
        if not (path / "config.json").exists():
            raise ValueError(f"{path} has no config.json (not a save_pretrained folder)")
        return str(path)

    @model_validator(mode="after")
    def _open_clip_weights(self) -> EmbedSpec:
        if self.backend == "open_clip" and self.weights is None:
            raise ValueError("embed.backend open_clip needs embed.weights (a local checkpoint file): "
                             "nothing is downloaded at build time")
        return self
