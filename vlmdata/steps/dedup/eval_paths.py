"""What `dedup.against` accepts, checked at validation without reading any data: a saved dataset
(vlmdata output or any `save_to_disk` folder) or a folder that holds image files."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
DATASET_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")


def is_dataset(path: Path) -> bool:
    return any((path / f).exists() for f in DATASET_MARKERS)


def has_images(path: Path) -> bool:
    """True at the first image file found (a big folder is not listed to the end)."""
    return any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in path.rglob("*"))


def eval_set_problem(path: Path) -> str | None:
    """Why `path` cannot be an eval set, or None."""
    if not path.is_dir():
        return f"{path} is a file; give a saved dataset folder or a folder of images"
    if is_dataset(path) or has_images(path):
        return None
    return (f"{path} is neither a saved dataset (no {' / '.join(DATASET_MARKERS)}) nor a folder with images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})")
