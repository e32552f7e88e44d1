"""SHA-256 of files and folders: what an export or a study records so a reader can check it used the same
checkpoint and cohort."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of one file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_hashes(folder: str | Path) -> dict:
    """{"path", "sha256", "files": {relative path: sha256}} over every file under ``folder``; the folder's
    hash is the SHA-256 of the "relative path  file hash" lines, sorted (as ``sha256sum`` prints them)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"cannot hash folder {root}: it does not exist or is not a folder")
    files = {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}
    listing = "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))
    return {"path": str(root), "sha256": hashlib.sha256(listing.encode()).hexdigest(), "files": files}
