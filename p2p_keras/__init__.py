"""p2p_keras: Pix2Pix (Isola et al., CVPR 2017) in Keras 3."""

__version__ = "0.1.0"
