"""atac-denoise: denoise low-depth ATAC-seq coverage and call peaks with a 1-D ResNet."""

__version__ = "0.1.0"
