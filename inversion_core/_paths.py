"""Checks of user-given file paths, made before any slow work (model load, optimisation), so a
wrong path fails in a second with a message naming it instead of after minutes with a bare OSError."""

from __future__ import annotations

import os
from pathlib import Path


def existing_file(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """``path`` if it is a file; otherwise an error saying whether it is a folder or missing.

    ``what`` names the input in the message ("image", "weights file"); ``hint`` is appended (". Pass ...")."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a directory, not a file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} not found (resolved to {path.resolve()}){hint}")
    return path


def existing_folder(path: str | os.PathLike) -> Path:
    """``path`` if it is a folder; otherwise FileNotFoundError naming it (a missing folder is not 'empty')."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"folder {str(path)!r} not found (resolved to {path.resolve()})")
    return path


def check_writable_file(path: str | os.PathLike, what: str) -> Path:
    """Refuse a file path that cannot be written: an existing directory, or a location whose nearest
    existing ancestor is a file or a folder without write permission. Missing folders in between are
    fine (they are made when the file is written); nothing is created here."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a directory; give the path of a file (in it or elsewhere)")
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"{what} {str(path)!r} cannot be written: {str(ancestor)!r} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {str(path)!r} cannot be written: no write permission in {str(ancestor)!r}; "
                              "choose another location")
    return path
