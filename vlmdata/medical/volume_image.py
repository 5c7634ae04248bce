"""NIfTI volume → one 8-bit PNG slice (or a montage of slices), oriented as radiologists read it.

The volume is first reoriented to the closest canonical orientation (RAS+: axis 0 runs to the
patient's right, 1 to anterior, 2 to superior), so `plane: axial` means axial whatever the file's
affine. A slice is shown in radiological convention: the patient's right on the image's left,
anterior (axial) or superior (coronal, sagittal) at the top.
"""

from __future__ import annotations

import gzip
from typing import Any

from vlmdata.medical.dicom_image import _png_array, _windowed, montage
from vlmdata.medical.view import NiftiView
from vlmdata.rows import ImageRef, RowError

PLANES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}


def load_canonical(data: bytes) -> Any:
    """A canonical (RAS+) nibabel image from .nii or .nii.gz bytes; RowError if it is not NIfTI."""
    import nibabel as nib

    try:
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError) as e:
        raise RowError("image_corrupt", f"cannot decompress NIfTI: {e}") from None
    for cls in (nib.Nifti1Image, nib.Nifti2Image):
        try:
            img = cls.from_bytes(raw)
            break
        except Exception as e:  # nibabel raises several types for a header of the other version
            err = e
    else:
        raise RowError("image_corrupt", f"not a NIfTI-1/2 volume: {type(err).__name__}: {err}")
    if len(img.shape) < 3:
        raise RowError("image_corrupt", f"NIfTI image has {len(img.shape)} dimensions, a volume needs 3")
    return nib.as_closest_canonical(img)


def display_slice(volume: Any, *, axis: int, index: int) -> Any:
    """Slice `index` along `axis` of a canonical volume, as a (rows, cols) display array."""
    import numpy as np

    s = np.take(volume, index, axis=axis)  # the remaining two axes, in RAS order
    return s[::-1, ::-1].T  # rows: high (anterior/superior) first; cols: patient's right first


def nifti_to_png(ref: ImageRef, data: bytes) -> bytes:
    import numpy as np

    view: NiftiView = ref.view
    img = load_canonical(data)
    volume = np.asarray(img.dataobj, dtype=np.float64)  # scl_slope/scl_inter applied (e.g. CT in HU)
    if volume.ndim > 3:  # a 4-D series (fMRI, DWI): its first volume
        volume = volume.reshape(*volume.shape[:3], -1)[..., 0]
    n = volume.shape[view.axis]
    indices = list(view.tiles) if view.tiles else [view.index if view.index is not None else n // 2]
    tiles = []
    for i in indices:
        if not 0 <= i < n:
            raise RowError("image_corrupt", f"slice {i} out of range (the volume has {n} along axis {view.axis})")
        values = display_slice(volume, axis=view.axis, index=i)
        chans = [_windowed(values, w, invert=False) for w in view.windows]
        tiles.append(chans[0] if len(chans) == 1 else np.stack(chans, axis=-1))
    out = montage(tiles, view.grid) if view.tiles and view.grid else tiles[0]
    return _png_array(np.ascontiguousarray(out))
