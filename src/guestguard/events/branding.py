"""How an invitation looks: the event's theme colour, the ink that stays
readable on it, and its cover image.

**Colour.** A host picks any colour; text on it must stay readable (WCAG AA,
a contrast of 4.5:1). So the ink is chosen, not picked: white or near-black,
whichever contrasts more. For every colour one of the two reaches 4.5:1
(the tests sweep the colour cube), so no colour needs refusing.

**Cover.** An upload is decoded by Pillow and written again as a JPEG no
wider than ``covers.max_width``: what survives is pixels, never the file's
metadata (EXIF, GPS position, comments) nor anything hidden in it (a script
in an SVG or a polyglot). JPEG because every mail client shows it. It is
stored in the database (``event_covers``), so every web process serves it
without a shared disk. Its address is public but unguessable: the cover's
id and an HMAC of it under a key derived from ``app.secret``, so only pages
and emails we render know it, and a cover replaced or removed stops being
served at once. Pillow is imported with the first upload, not by every web
process at startup."""
from __future__ import annotations

import hashlib
import hmac
import io
import re
import uuid
import warnings
from dataclasses import dataclass

from guestguard.keys import derive_key

# --- colour ------------------------------------------------------------------

LIGHT_INK, DARK_INK = "#ffffff", "#000000"
AA_CONTRAST = 4.5
_HEX = re.compile(r"#?([0-9a-f]{3}|[0-9a-f]{6})")
NOT_A_COLOUR = "must be a colour written like #1f5fbf"


def normalize_colour(value: str) -> str:
    """"#1F5FBF", "1f5fbf" or "#15b" as "#1f5fbf"; "" stays "" (the house's
    colours). ValueError for anything else."""
    text = value.strip().lower()
    if not text:
        return ""
    found = _HEX.fullmatch(text)
    if found is None:
        raise ValueError(NOT_A_COLOUR)
    digits = found.group(1)
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    return "#" + digits


def luminance(colour: str) -> float:
    """WCAG 2's relative luminance of "#rrggbb"."""
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (int(colour[index:index + 2], 16) for index in (1, 3, 5))
    return 0.2126 * channel(red) + 0.7152 * channel(green) + 0.0722 * channel(blue)


def contrast(first: str, second: str) -> float:
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def ink_for(colour: str) -> str:
    """The text colour for a background of ``colour``: the more readable of
    white and black."""
    return LIGHT_INK if contrast(colour, LIGHT_INK) >= contrast(colour, DARK_INK) else DARK_INK


# --- the cover image ------------------------------------------------------------

COVER_TYPE = "image/jpeg"
COVER_QUALITY = 85
# Formats a camera or a design tool gives; anything else is refused.
COVER_FORMATS = {"JPEG", "PNG", "WEBP", "GIF"}
# Pixels decoded at most (a 40-megapixel photo fits); a "decompression bomb"
# (a small file that unpacks to gigabytes) is refused before it is decoded.
MAX_PIXELS = 40_000_000


class CoverRefused(ValueError):
    """An upload that cannot be a cover; the message says why, for the form."""


@dataclass(frozen=True)
class Encoded:
    data: bytes
    width: int
    height: int
    content_type: str = COVER_TYPE


def reencode(data: bytes, *, max_bytes: int, max_width: int) -> Encoded:
    """The upload as the cover guests get: decoded, turned the way the
    camera meant (EXIF orientation), flattened onto white, scaled down to
    ``max_width`` and written as a fresh JPEG with no metadata."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise CoverRefused("is empty: choose an image file")
    if len(data) > max_bytes:
        raise CoverRefused(f"is larger than {max_bytes // (1024 * 1024)} MB: choose a smaller image")
    too_many = CoverRefused("has too many pixels: choose an image under 40 megapixels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in COVER_FORMATS:
                raise CoverRefused("must be a JPEG, PNG, WebP or GIF image")
            if image.width * image.height > MAX_PIXELS:
                raise too_many
            # A JPEG decodes at 1/2, 1/4 or 1/8 scale when that is still at
            # least the width kept: a camera's photo decodes several times faster.
            image.draft("RGB", (max_width, max(1, image.height * max_width // image.width)))
            image.load()
    except CoverRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_many from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise CoverRefused("is not an image we can read: choose a JPEG, PNG, WebP or GIF file") from None
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    else:
        image = image.convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, max(1, round(image.height * max_width / image.width))),
                             Image.Resampling.LANCZOS)
    # Only the pixels go on: a fresh image carries no comment, ICC profile,
    # EXIF or other chunk of the upload's (``info``), which JPEG's writer would keep.
    image = Image.frombytes("RGB", image.size, image.tobytes())
    out = io.BytesIO()
    image.save(out, "JPEG", quality=COVER_QUALITY, optimize=True, progressive=True)
    return Encoded(out.getvalue(), image.width, image.height)


def cover_signature(settings, cover_id: uuid.UUID) -> str:
    return hmac.new(derive_key(settings, "event-cover"), cover_id.bytes, hashlib.sha256).hexdigest()


def cover_signed(settings, cover_id: uuid.UUID, signature: str) -> bool:
    return hmac.compare_digest(cover_signature(settings, cover_id), signature)
