"""Decoding DICOM pixel data, with a reject that says what would decode a file that does not.

pydicom decodes compressed transfer syntaxes through plugins; the `medical` extra installs
pylibjpeg with its libjpeg (JPEG baseline/extended/lossless, JPEG-LS), openjpeg (JPEG 2000, HTJ2K)
and rle plugins. When a file still cannot be decoded, the reject names its transfer syntax and the
package that decodes it (or says that none exists for pydicom, e.g. for MPEG video syntaxes), so a
user knows whether to install something or to convert the file.
"""

from __future__ import annotations

import importlib
from typing import Any

from vlmdata.rows import RowError

_LIBJPEG = ("pylibjpeg-libjpeg", "libjpeg")
_OPENJPEG = ("pylibjpeg-openjpeg", "openjpeg")
_RLE = ("pylibjpeg-rle", "rle")

# transfer syntax UID -> (pip package, module it installs)
SYNTAX_PACKAGES: dict[str, tuple[str, str]] = {
    "1.2.840.10008.1.2.4.50": _LIBJPEG,   # JPEG Baseline (8-bit)
    "1.2.840.10008.1.2.4.51": _LIBJPEG,   # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57": _LIBJPEG,   # JPEG Lossless
    "1.2.840.10008.1.2.4.70": _LIBJPEG,   # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": _LIBJPEG,   # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": _LIBJPEG,   # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": _OPENJPEG,  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": _OPENJPEG,  # JPEG 2000
    "1.2.840.10008.1.2.4.201": _OPENJPEG,  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": _OPENJPEG,  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": _OPENJPEG,  # HTJ2K
    "1.2.840.10008.1.2.5": _RLE,          # RLE Lossless (pydicom also has a slow native decoder)
}


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # ImportError, or a module blocked in sys.modules
        return False
    return True


def transfer_syntax(ds: Any) -> Any:
    return getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)


def decode_failure(ds: Any, error: BaseException) -> str:
    """The reject detail for a file whose pixels did not decode: the syntax, and what would decode it."""
    syntax = transfer_syntax(ds)
    cause = f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:300] if str(error).strip() else ''}"
    if syntax is None:
        return f"cannot decode pixel data ({cause}); the file has no transfer syntax in its meta header"
    label = f"transfer syntax {syntax.name} ({syntax})"
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return f"the file has no pixel data (it is not an image: SOP class {ds.get('SOPClassUID', '?')})"
    package = SYNTAX_PACKAGES.get(str(syntax))
    if package is not None and not _importable(package[1]):
        return (f"cannot decode pixel data: {label} needs the {package[0]} decoder plugin for pydicom: "
                f"pip install {package[0]} (or the vlmdata[medical] extra) ({cause})")
    try:
        from pydicom.pixels import get_decoder

        get_decoder(syntax)
    except NotImplementedError:
        return (f"cannot decode pixel data: no pydicom decoder exists for {label}; convert the file to an "
                f"uncompressed transfer syntax first (e.g. `gdcmconv --raw` or dcmtk) ({cause})")
    except Exception:  # an unknown UID
        pass
    return f"cannot decode pixel data with {label}: the data may be corrupt ({cause})"


def decode_frame(ds: Any, index: int | None) -> Any:
    """The pixel array of frame `index` (None: every frame); only that frame is decoded."""
    from pydicom.pixels import pixel_array

    try:
        return pixel_array(ds, index=index) if index is not None else ds.pixel_array
    except Exception as e:
        raise RowError("dicom_error", decode_failure(ds, e)) from None
