"""Reading the files users hand us (signals, books, returns, key rings, connection settings)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.domain.errors import ValidationFailed


def read_text(path: Path) -> str:
    """The file's text, decoded as UTF-8, line endings as written.

    A file that cannot be read, or whose bytes are not UTF-8, raises :class:`ValidationFailed`
    naming the file (and, for bad bytes, where the first one is).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationFailed(
            str(path), [("", f"cannot read file: {exc.strerror or exc}")]
        ) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            str(path), [("", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]
        ) from exc
