"""Evaluation of trained runs: paired (pix2pix), unpaired (CycleGAN, UGATIT), FID/KID, the report."""
