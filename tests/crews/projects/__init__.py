"""CrewAI projects in CrewAI's own layout, written for this suite (zipped by ``zip_project``)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def zip_project(name: str, *, only: tuple[str, ...] = ()) -> bytes:
    """The project folder ``name`` as a zip, its folder at the archive's root (as GitHub and
    ``zip -r`` give it); ``only`` keeps just the files with those names."""
    buffer = io.BytesIO()
    root = HERE / name
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file() and (not only or path.name in only):
                archive.write(path, str(path.relative_to(HERE)))
    return buffer.getvalue()


def zip_members(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buffer.getvalue()
