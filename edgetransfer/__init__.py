"""edgetransfer: from a pretrained vision backbone to a fast, small, accurate model on an edge device."""

__version__ = "0.1.0"

__all__ = ["__version__"]
