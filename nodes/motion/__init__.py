"""Motion nodes: mocap files (AMASS, Mixamo and other rigs) and motion from video."""
