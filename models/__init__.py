"""Networks and their registry (installed as ``masktwins_cli.models``; relative imports only)."""

from .registry import MODEL_BUILDERS, build_model
from .unet import UNet

__all__ = ["MODEL_BUILDERS", "UNet", "build_model"]
