"""Put a finished folder in place of an older one so that a crash at any moment loses nothing.

A build writes into `.NAME.partial-PID` next to the final folder. `replace_dir` fsyncs every file and
folder of it, moves the old dataset aside (`.NAME.old-PID`), renames the new one in, fsyncs the parent
and only then deletes the old one. If the second rename fails, the old dataset is put back under its
name. `clean_stale` (run by the next build) removes the partial folders of dead processes, and puts
back an `.old-PID` folder whose process died between the two renames (the final name missing), so a
kill never costs the previous dataset.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> int | None:
    pid = path.name.rsplit("-", 1)[-1]
    return int(pid) if pid.isdigit() else None


def clean_stale(final: Path) -> None:
    """Remove `.NAME.partial-*` / `.NAME.old-*` folders whose owner process is dead (restoring an old
    dataset whose swap was cut short)."""
    for p in sorted(final.parent.glob(f".{final.name}.old-*")):
        pid = _owner(p)
        if pid is None or pid_alive(pid):
            continue
        if not final.exists():
            p.rename(final)  # the process died between the two renames: the old dataset comes back
        else:
            shutil.rmtree(p, ignore_errors=True)
    for p in final.parent.glob(f".{final.name}.partial-*"):
        pid = _owner(p)
        if pid is not None and not pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _fsync_path(path: Path, *, directory: bool) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # a platform that cannot open folders (Windows): nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file, then every folder (deepest first), of `root`."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                _fsync_path(p, directory=False)
        _fsync_path(Path(dirpath), directory=True)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move `tmp` to `final`, durably; an existing `final` is swapped out first and deleted last."""
    fsync_tree(tmp)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    try:
        tmp.rename(final)
    except BaseException:
        if old is not None and not final.exists():
            old.rename(final)  # the swap failed: the old dataset is back under its name
        raise
    _fsync_path(final.parent, directory=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
