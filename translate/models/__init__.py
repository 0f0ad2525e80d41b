"""Translation networks (Keras 3): shared layers and the pix2pix U-Net / PatchGAN pair."""
