"""Video decomposition: the person's track, depth, occluders in front, the scene behind."""
