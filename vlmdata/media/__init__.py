"""Images as bytes: verification, bit depth, thumbnails."""
