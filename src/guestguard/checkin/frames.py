"""A camera frame decoded on the server, for phones whose browser has no
BarcodeDetector: the door page sends the frame, zxing-cpp reads the QR.
Pillow and zxing-cpp are imported with the first frame, not by every web
process at startup."""
from __future__ import annotations

import base64
import binascii
import io
import warnings

from guestguard.errors import APIError

MAX_FRAME_BYTES = 1536 * 1024  # a phone camera's frame as JPEG, with room
MAX_FRAME_PIXELS = 4096 * 4096
ACCEPTED = ("image/jpeg", "image/png", "image/webp")


def frame_bytes(data_url: str) -> bytes:
    """The image in a ``data:image/…;base64,`` URL (what a canvas gives)."""
    head, _, payload = data_url.partition(",")
    media = head.removeprefix("data:").removesuffix(";base64")
    if not head.startswith("data:") or not head.endswith(";base64") or media not in ACCEPTED:
        raise APIError(422, "validation_failed", "The frame must be a JPEG, PNG or WebP image as a data: URL.",
                       fields={"image": "must be a data:image/jpeg;base64,… URL (or PNG or WebP)"})
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(422, "validation_failed", "The frame's base64 is damaged.",
                       fields={"image": "is not valid base64"}) from None


def decode(data: bytes) -> str | None:
    """The first QR code's text in the image, or None when it shows none."""
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_FRAME_PIXELS:
                raise APIError(413, "too_large", "The frame is too large: send at most 4096 × 4096 pixels.")
            image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise APIError(422, "validation_failed", "The frame is not an image we can read.",
                       fields={"image": "is not a readable image"}) from None
    found = zxingcpp.read_barcodes(image.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)
    return found[0].text if found else None
