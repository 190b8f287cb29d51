"""cog: the ImageNet-CoG benchmark harness (Sariyildiz et al., ICCV 2021)."""

__version__ = "0.1.0"


class CogError(Exception):
    """A user-facing error: the message names the file, the item and the fix."""
