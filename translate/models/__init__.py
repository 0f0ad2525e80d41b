"""Translation networks (Keras 3), one module per family (pix2pix, cyclegan, ugatit) over shared
layers; `registry` is the table of families."""
