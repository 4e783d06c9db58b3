"""MIMORecoverPalette: the official vertex colours recovered from an official template (vid.mp4 + sdc.mp4),
saved into models/mimo where MIMO Rasterize Motion lists it like sdc_info.npy."""

import logging
import os
import re

import comfy.model_management as mm
import numpy as np
from comfy_api.latest import io

from ..models.composite.recover_template import recover_from_template
from ..models.motion.from_video import estimate_nlf
from .composite.template import template_folder, template_options
from . import folders
from .body import rest_pelvis
from .folders import NLF_KEY, resolve
from .motion.video import estimator_options
from .types import CATEGORY_MOTION, MIMOBody

log = logging.getLogger("MIMO")


class MIMORecoverPalette(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMORecoverPalette",
            display_name="MIMO Recover Palette",
            category=CATEGORY_MOTION,
            description="Recovers the official per-vertex colours from an official template: the body motion and "
                        "camera are estimated from vid.mp4 (NLF), the body is rasterized with that camera, sdc.mp4 "
                        "is sampled at every visible vertex over all frames, and a visibility- and edge-weighted "
                        "median per vertex is taken (vertices never seen: from their mesh neighbours). The palette "
                        "is saved into models/mimo, where MIMO Rasterize Motion lists it (press R).",
            inputs=[
                io.Combo.Input("template", options=template_options(),
                               tooltip="An official template folder in ComfyUI/input holding vid.mp4 and sdc.mp4."),
                io.Combo.Input("estimator", options=estimator_options(),
                               tooltip="NLF's .torchscript file in models/nlf (non-commercial), used on vid.mp4."),
                MIMOBody.Input("body", tooltip="The body whose vertices get colours: an SMPL / SMPL-H file (6890 "
                                               "vertices) for a palette that matches sdc_info.npy's layout."),
                io.Int.Input("max_frames", default=150, min=1, max=10_000,
                             tooltip="Frames of the template used (more frames: more of the body seen)."),
                io.String.Input("name", default="sdc_recovered",
                                tooltip="File name in models/mimo (letters, digits, '-', '_'); '.npy' is added."),
            ],
            outputs=[io.String.Output(display_name="palette", tooltip="The palette file written (models/mimo).")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, template, estimator, body, max_frames, name) -> io.NodeOutput:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name or ""):
            raise ValueError(f"name '{name}' may only hold letters, digits, '-' and '_'.")
        nlf = resolve(NLF_KEY, estimator, "NLF model")
        device = mm.get_torch_device()

        def estimate(frames, fps):
            return estimate_nlf(frames, nlf, fps, device=device, rest_pelvis=rest_pelvis(body))

        palette, info = recover_from_template(template_folder(template), estimate, body, max_frames)
        path = folders.writable("mimo", f"{name}.npy", "Palette")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, palette.numpy().astype(np.float32))
        log.info("Recovered palette %s from '%s': %s", path, template, info)
        return io.NodeOutput(f"{name}.npy")
