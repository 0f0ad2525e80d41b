"""Face data: the Face contract, detectors, the usability filter, alignment, colours, panels, image files, synthetic faces, the gallery."""
