"""Real photographs that ship inside installed packages (scikit-image), for the demo and tests.

Nothing is downloaded: the files are read from the installed wheel.
"""

from __future__ import annotations

from pathlib import Path


def photo_bytes(name: str) -> bytes:
    """The bytes of a photograph bundled with scikit-image, e.g. ``coffee.png``."""
    try:
        import skimage
    except ImportError as missing:
        raise SystemExit(
            "sample photos come from scikit-image: pip install 'eraser[demo]'"
        ) from missing
    return (Path(skimage.__file__).parent / "data" / name).read_bytes()
