"""Reading and writing photos for the CLI and the API (docs/design.md §8).

``read_image(path) -> (image, bit_depth)``: ``image`` is float32 (H, W, C) display values in
[0, 1] with C = 3 (colour) or C = 1 (grayscale is kept 1-channel: restoration works per
channel, the estimator repeats it to 3 channels), ``bit_depth`` 8 or 16.

- 8-bit PNG/JPEG/... through Pillow, EXIF orientation applied (``ImageOps.exif_transpose``);
  palettes expanded; CMYK/YCbCr converted to RGB.
- 16-bit PNG through pypng (Pillow reads 16-bit RGB PNG as 8-bit without a word, and cannot
  write it); the EXIF orientation, if any, is applied the same way.
- 16-bit and floating-point TIFF (a raw developer's output; floating point read as 16-bit
  values in [0, 1]) through tifffile, for the same reason; its first image, its
  Orientation tag applied. Other TIFFs through Pillow.
- An alpha channel is dropped with a ``UserWarning`` naming the file.
- Not an image, a truncated file, or an image smaller than ``min_size`` (e.g. the kernel)
  raise ``ValueError`` with one line naming the file (for a phone's HEIC photo, saying to
  convert it to JPEG or PNG).

``write_image(path, image, bit_depth)`` writes PNG at 8 or 16 bits (JPEG at 8), atomically.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import png
from PIL import Image, ImageOps

from blurfield.fileio import write_atomic

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")  # little- and big-endian
ORIENTATION_TAG = 0x0112
HEIF_SUFFIXES = (".heic", ".heif", ".hif")  # phones' default; Pillow has no decoder for it


def _fail(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def is_jpeg(path: str | Path) -> bool:
    """Whether the file at ``path`` is a JPEG (its first bytes, whatever its name)."""
    with open(path, "rb") as f:
        return f.read(3) == JPEG_SIGNATURE


def _png_bit_depth(path: Path) -> int | None:
    """The IHDR bit depth of a PNG file, None if the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 26 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">B", head[24:25])[0]


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) array turned upright for EXIF orientation 1..8 (as ``exif_transpose``)."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, k=1),
    }
    return np.ascontiguousarray(ops.get(int(orientation), ops[1])(image))


def _drop_alpha(a: np.ndarray, path: Path) -> np.ndarray:
    if a.shape[-1] in (2, 4):
        warnings.warn(f"{path}: alpha channel dropped", UserWarning, stacklevel=3)
        return a[..., :-1]
    return a


def _unit(a: np.ndarray, top: float) -> np.ndarray:
    """Integer samples as float32 in [0, 1], ``a / top``, divided in place on the one copy
    (a 48 MP photo's second copy would be 0.6 GB)."""
    out = a.astype(np.float32)
    out /= top
    return out


def _read_png16(path: Path) -> np.ndarray:
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    a = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, planes)
    if info["bitdepth"] != 16:
        raise ValueError(f"unexpected bit depth {info['bitdepth']}")
    with Image.open(path) as im:
        orientation = im.getexif().get(ORIENTATION_TAG, 1)
    return _unit(apply_orientation(_drop_alpha(a, path), orientation), 65535.0)


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in TIFF_SIGNATURES


def _read_deep_tiff(path: Path) -> tuple[np.ndarray, int] | None:
    """The first image of a TIFF file with more than 8 bits per sample or floating-point
    samples, through tifffile (a raw developer's 16-bit output, which Pillow would read as
    8-bit): uint16 -> 16 bits, floating point -> clipped to [0, 1], 16; planar samples moved
    last; its Orientation tag applied. None for any other TIFF (8-bit, palette, CMYK...),
    which Pillow reads in full."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        deep = (page.bitspersample > 8 or page.sampleformat == tifffile.SAMPLEFORMAT.IEEEFP)
        if not deep:
            return None
        if page.photometric not in (tifffile.PHOTOMETRIC.MINISBLACK,
                                    tifffile.PHOTOMETRIC.RGB):
            raise ValueError(f"{page.bitspersample}-bit {page.photometric.name} TIFF; "
                             "save it as RGB or grayscale")
        a = page.asarray()
        axes = page.axes
        tag = page.tags.get("Orientation")
        orientation = int(tag.value) if tag is not None else 1
    if axes.startswith("S") and a.ndim == 3:  # planar: samples first
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"unsupported TIFF layout {axes} {a.shape}")
    a = _drop_alpha(a, path)
    if a.dtype == np.uint16:
        out, depth = _unit(a, 65535.0), 16
    elif np.issubdtype(a.dtype, np.floating):
        out, depth = np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0), 16
    else:
        raise ValueError(f"unsupported TIFF sample type {a.dtype}")
    return apply_orientation(out, orientation), depth


def _read_pillow(path: Path) -> tuple[np.ndarray, int]:
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode == "P" or mode == "PA":
            im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
        elif mode == "1":
            im = im.convert("L")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        elif mode.startswith("I;16") or mode == "I":
            a = np.asarray(im, dtype=np.float64)[..., None]
            return (np.clip(a, 0, 65535) / 65535.0).astype(np.float32), 16
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            raise ValueError(f"unsupported image mode {mode}")
        a = np.asarray(im)
    if a.ndim == 2:
        a = a[..., None]
    return _unit(_drop_alpha(a, path), 255.0), 8


def read_image(path: str | Path, min_size: int = 1) -> tuple[np.ndarray, int]:
    """Read a photo: (float32 (H, W, C) display in [0, 1], C in {1, 3}; bit depth 8 or 16).

    Raises ``ValueError`` (one line naming the file) for a missing file, something that is
    not an image, a truncated file, or an image whose height or width is below ``min_size``.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        if _png_bit_depth(path) == 16:
            image, depth = _read_png16(path), 16
        elif _is_tiff(path) and (deep := _read_deep_tiff(path)) is not None:
            image, depth = deep
        else:
            image, depth = _read_pillow(path)
    except Exception as e:  # Pillow/pypng raise many kinds; keep the first line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = ""
        if path.suffix.lower() in HEIF_SUFFIXES:
            hint = "; HEIC/HEIF photos are not read here: convert it to JPEG or PNG first"
        raise _fail(path, f"not a readable image ({msg}){hint}") from None
    h, w = image.shape[:2]
    if min(h, w) < min_size:
        raise _fail(path, f"image is {w}x{h} pixels, smaller than the {min_size}x{min_size} "
                          "kernel; use a larger photo")
    return image, depth


def to_uint(image: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Float display values in [0, 1] -> uint8/uint16 (rounded, clipped); integer arrays pass."""
    if image.dtype in (np.uint8, np.uint16):
        return image
    top = 255 if bit_depth == 8 else 65535
    out = np.nan_to_num(image, nan=0.0)  # a copy; the rest in place on it
    np.clip(out, 0.0, 1.0, out=out)
    out *= top
    return np.round(out, out=out).astype(np.uint8 if bit_depth == 8 else np.uint16)


def write_image(path: str | Path, image: np.ndarray, bit_depth: int = 8) -> None:
    """Write (H, W, C) or (H, W) ``image`` (float in [0, 1], or uint8/uint16) atomically.

    PNG at ``bit_depth`` 8 or 16 (16 through pypng); JPEG (.jpg/.jpeg) at 8 bits only.
    """
    path = Path(path)
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth: must be 8 or 16, got {bit_depth}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise ValueError(f"image: expected (H, W), (H, W, 1) or (H, W, 3), got {image.shape}")
    if image.dtype == np.uint16 and bit_depth == 8:
        image = (image.astype(np.float32) / 65535.0)
    elif image.dtype == np.uint8 and bit_depth == 16:
        image = image.astype(np.float32) / 255.0
    data = to_uint(image, bit_depth)
    suffix = path.suffix.lower()
    if suffix == ".png" and bit_depth == 16:
        h, w = data.shape[:2]
        c = 1 if data.ndim == 2 else 3
        writer = png.Writer(width=w, height=h, bitdepth=16, greyscale=c == 1, alpha=False)
        write_atomic(path, lambda f: writer.write_array(f, data.reshape(-1)))
    elif suffix == ".png":
        write_atomic(path, lambda f: Image.fromarray(data).save(f, format="PNG", compress_level=3))
    elif suffix in (".jpg", ".jpeg"):
        if bit_depth != 8:
            raise ValueError(f"{path}: JPEG holds 8 bits only; write a .png for 16 bits")
        write_atomic(path, lambda f: Image.fromarray(data).save(f, format="JPEG", quality=95))
    else:
        raise ValueError(f"{path}: unknown image type {suffix!r} (use .png or .jpg)")
