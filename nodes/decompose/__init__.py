"""Decomposition nodes: tracking, depth, occluders, scene inpainting."""
