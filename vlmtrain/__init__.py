"""vlmtrain: fine-tune vision-language models on vlmdata outputs with LoRA and `transformers.Trainer`.

The package root imports nothing heavy, so `vlmtrain --help` and config validation start fast; torch,
transformers and peft are imported inside the functions that need them.
"""

__all__: list[str] = []
