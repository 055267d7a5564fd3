"""Style masks as both sides check them (torch-free): one per style image, white where its style paints."""

from __future__ import annotations

from PIL import Image

from nst_shared.errors import EmptyMask, InvalidParameter


def check_mask_count(masks: int, styles: int) -> None:
    """None at all, or one per style image (in the same order); InvalidParameter naming style_mask otherwise."""
    if masks and masks != styles:
        raise InvalidParameter(
            f"style_mask: {masks} mask(s) for {styles} style image(s); give one per style image, "
            "in the same order (an all-white mask: that style everywhere), or none",
            field="style_mask",
        )


def check_mask_covers(mask: Image.Image, index: int) -> None:
    """EmptyMask when the mask (its luminance) is black everywhere."""
    _low, high = mask.convert("L").getextrema()
    if high == 0:
        raise EmptyMask(
            f"style mask {index + 1} is black everywhere, so its style would paint nowhere; white marks where it paints"
        )
