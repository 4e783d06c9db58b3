"""MIMOBodyModelLoader: an SMPL / SMPL-H / SMPL-X model file, or the built-in demo body -> MIMO_BODY."""

import folder_paths
import numpy as np
import torch
from comfy_api.latest import io

from ..models.body import demo_body, load_body
from .folders import resolve
from .types import CATEGORY_MODEL, MIMOBody

DEMO = "demo body (built-in)"


def rest_joints(body, betas=None) -> np.ndarray:
    """The body's rest joints [J,3] (float64) for shape ``betas`` (None: its mean shape)."""
    b = None if betas is None else torch.as_tensor(np.asarray(betas), dtype=torch.float32)
    return body.rest_joints(b).detach().cpu().double().numpy()


def rest_pelvis(body):
    """betas -> the body's rest pelvis [3]: what the motion loaders take as ``rest_pelvis``."""
    return lambda betas: rest_joints(body, betas)[0]


def body_options() -> list[str]:
    return [DEMO] + folder_paths.get_filename_list("smpl")


class MIMOBodyModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MIMOBodyModelLoader",
            display_name="MIMO Body Model Loader",
            category=CATEGORY_MODEL,
            description="The human body that motions are applied to and rendered from: an SMPL-family model "
                        "file or a licence-free built-in demo body.",
            inputs=[
                io.Combo.Input(
                    "body_model", options=body_options(), default=DEMO,
                    tooltip="'demo body (built-in)': a licence-free procedural body on SMPL's 24-joint skeleton "
                            "(no shape space, rigid hands). Or an SMPL (.pkl, e.g. SMPL_NEUTRAL.pkl / "
                            "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl), SMPL-H (e.g. AMASS's smplh/neutral/"
                            "model.npz) or SMPL-X (SMPLX_NEUTRAL.npz) file from ComfyUI/models/smpl (subfolders "
                            "are fine). The file decides the kind and gender. These models are non-commercial, "
                            "need registration at smpl.is.tue.mpg.de / mano.is.tue.mpg.de / smpl-x.is.tue.mpg.de, "
                            "and are never shipped or downloaded by this pack: place them yourself."),
            ],
            outputs=[MIMOBody.Output(display_name="body",
                                     tooltip="The body model (vertices, faces, skinning, joint tree).")],
        )

    @classmethod
    def validate_inputs(cls, body_model) -> bool:
        # A missing file is reported at run time with the folders searched.
        return True

    @classmethod
    def execute(cls, body_model) -> io.NodeOutput:
        if body_model == DEMO:
            return io.NodeOutput(demo_body())
        return io.NodeOutput(load_body(resolve("smpl", body_model, "Body model")))
