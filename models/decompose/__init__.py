"""Video decomposition: the person's track, depth, occluders in front, the scene behind.

SAM 2 by job: ``sam2_build`` (checkpoint -> model), ``sam2_video`` (the video predictor on frames in
memory), ``prompts`` (mask / points / box), ``person_finder`` (no prompt), ``sam2_masks`` (automatic
masks), ``track`` (the person, objects from keyframes). Then ``depth``, ``occlusion``, ``inpaint``.
"""
