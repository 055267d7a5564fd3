"""The style-transfer engine: images in, image out, with a progress callback. Knows nothing of Redis or HTTP."""
