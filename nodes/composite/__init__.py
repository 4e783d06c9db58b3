"""Compositing nodes: templates, ROI planning, paste-back."""
