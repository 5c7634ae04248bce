"""Medical imaging: DICOM and NIfTI decoding, VOI windows, slicing and de-identification."""
