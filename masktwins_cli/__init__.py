"""masktwins: MaskTwins unsupervised domain adaptation for volumetric EM segmentation."""

__version__ = "0.1.0"
