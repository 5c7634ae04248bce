"""The wheel ships every package and every template (templates are found by name after `pip install`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_every_package_and_template(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a clean copy: setuptools would reuse a stale build/ folder in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "out", "runs", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", ".ruff_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("vlmdata-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    on_disk = [p.parent.relative_to(ROOT).as_posix() for top in ("vlmdata", "vlmtrain")
               for p in (ROOT / top).rglob("__init__.py")]
    missing = [pkg for pkg in on_disk if f"{pkg}/__init__.py" not in names]
    assert not missing, f"packages missing from the wheel (add them to pyproject's packages): {missing}"
    templates = [p.relative_to(ROOT / "templates").as_posix() for p in (ROOT / "templates").rglob("*.j2")]
    assert templates and all(f"vlmdata/templates/{t}" in names for t in templates)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "vlmdata = vlmdata.cli:main" in text and "vlmtrain = vlmtrain.cli:main" in text
