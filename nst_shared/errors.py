"""Errors of the engine, of image decoding and of a job's storage: one root, each with a stable `code` (a job
failure code)."""


class NstError(Exception):
    """Root of every error the engine raises on purpose."""

    code = "engine_error"


class ImageError(NstError):
    """An input image cannot be used; `code` says why."""

    code = "invalid_image"


class UnreadableImage(ImageError):
    """Raised when the bytes are empty, truncated or not a decodable image."""

    code = "unreadable_image"


class UnsupportedImageFormat(ImageError):
    """Raised when the bytes decode as a format outside the allowlist (JPEG, PNG, WebP, BMP, TIFF) or animate."""

    code = "unsupported_format"


class ImageTooLarge(ImageError):
    """Raised when an image has more pixels than allowed (decompression bombs included)."""

    code = "image_too_large"


class ImageTooSmall(ImageError):
    """Raised when an image is too small for the deepest VGG19 layer the transfer uses."""

    code = "image_too_small"


class EmptyMask(ImageError):
    """Raised when a style mask is black everywhere: its style would paint nowhere."""

    code = "empty_mask"


class InvalidParameter(NstError, ValueError):
    """Raised when parameters do not fit the inputs (a blend per style, known layer names...)."""

    code = "invalid_parameter"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class WeightsUnavailable(NstError):
    """Raised when the VGG19 weights asked for are not on this machine (nothing is ever downloaded)."""

    code = "weights_unavailable"


class DeviceOutOfMemory(NstError):
    """Raised when the device runs out of memory during a transfer; the engine stays usable."""

    code = "out_of_memory"


class Diverged(NstError):
    """Raised when the optimisation's loss stops being a finite number (weights far too large)."""

    code = "diverged"


class StorageUnavailable(NstError):
    """Raised when a job's result cannot be written to storage (a folder or an S3 bucket out of reach or full)
    after the worker tried again a few times."""

    code = "storage_unavailable"


class UnreadableVideo(ImageError):
    """Raised when a clip's container or frames cannot be read (damaged, no video stream, a still GIF)."""

    code = "unreadable_video"


class VideoHeadersLied(ImageError):
    """Raised while decoding a clip whose frames outnumber or outgrow what its headers said at submission."""

    code = "video_headers_lied"
