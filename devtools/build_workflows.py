"""Regenerate the shipped workflows in ``workflows/`` from their descriptions here.

    python -m devtools.build_workflows

Starts the pinned ComfyUI with this pack and tiny weights (for the widget layout and the file
names), then writes each workflow in the frontend's format.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .comfy_host import ComfyServer, provision_comfyui
from .demo_assets import AMASS_NAME, MIXAMO_NAME, MOTION_NAME, REFERENCE_NAME, TEMPLATE_NAME, VIDEO_NAME
from .nlf_standin import STANDIN_NAME
from .run_demo import load_pack
from .workflow_builder import WorkflowBuilder

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / "workflows"

DEMO_NOTE = """## MIMO tiny demo
Runs anywhere (CPU included) in seconds with **tiny random weights**: the output is noise-like,
the point is that every stage runs. Create them with `python -m devtools.run_demo` (it also runs
this workflow) or call `models.generate.tiny.write_tiny_weights(ComfyUI/models)`:

- `models/mimo/tiny/denoising_unet.pth`, `reference_unet.pth`, `pose_guider.pth`, `motion_module.pth`
- `models/vae/mimo-tiny-vae.safetensors`
- `models/clip_vision/mimo-tiny-image-encoder.safetensors` (+ `.json`)
- `input/mimo_demo_reference.png` (character on transparent background), `input/mimo_demo_motion.png`
  (animated PNG of motion renders), from `devtools/demo_assets.py`.

For the real model put the released files in `models/mimo`, `sd-vae-ft-mse` in `models/vae` and the
sd-image-variations image encoder in `models/clip_vision`, and use 784x784 with 25 steps."""


AMASS_NOTE = """## MIMO: character + AMASS motion (tiny demo weights)
An AMASS motion drives MIMO's body, which is rasterized to the motion frames the sampler takes.

- AMASS `.npz` motions (`*_poses.npz` SMPL+H G or `*_stageii.npz` SMPL-X) go in `ComfyUI/input`
  (subfolders are fine; press R to refresh). AMASS is non-commercial and registration-only: it is
  never shipped. `mimo_demo_walk_poses.npz` is a synthetic stand-in from `devtools/demo_assets.py`.
- Body: the built-in demo body runs anywhere; SMPL/SMPL-H/SMPL-X files (non-commercial, from their
  authors' sites) go in `ComfyUI/models/smpl`.
- Palette: the official `sdc_info.npy` (in `models/mimo`) is what the released pose guider was
  trained on; without it the default colours are used.
- Swap the tiny models for the released ones (`models/mimo`, `models/vae`, `models/clip_vision`; see the
  tiny demo's note) and use 784x784, 25 steps."""


def _character(b: WorkflowBuilder) -> dict:
    """The tiny MIMO models and the character picture (alpha turned into a matte)."""
    vae = b.add("VAELoader", (0, 0), size=(320, 60), vae_name="mimo-tiny-vae.safetensors")
    loader = b.add("MIMOModelLoader", (0, 120), size=(360, 260),
                   denoising_unet="tiny/denoising_unet.pth", reference_unet="tiny/reference_unet.pth",
                   pose_guider="tiny/pose_guider.pth", motion_module="tiny/motion_module.pth",
                   vae_name="none", image_encoder_name="mimo-tiny-image-encoder.safetensors", precision="auto")
    b.connect(vae, 0, loader, "vae")
    ref = b.add("LoadImage", (0, 420), size=(320, 320), title="Character", image=REFERENCE_NAME)
    matte = b.add("InvertMask", (360, 640), size=(200, 30), title="Alpha -> matte")
    b.connect(ref, "MASK", matte, "mask")
    return dict(vae=vae, loader=loader, ref=ref, matte=matte)


def _sample(b: WorkflowBuilder, c: dict, size: dict, motion, scene_frames=None):
    """Identity, scene, sampler and VAE decode. ``motion``: (node, slot), or a callable adding the
    motion nodes after the scene node; ``scene_frames``: (node, slot) of the scene, else white."""
    identity = b.add("MIMOIdentityEncode", (420, 120), size=(320, 150), **size)
    b.connect(c["loader"], 0, identity, "mimo_model")
    b.connect(c["ref"], "IMAGE", identity, "reference")
    b.connect(c["matte"], 0, identity, "mask")
    scene = b.add("MIMOSceneEncode", (420, 320), size=(320, 110), **size)
    b.connect(c["loader"], 0, scene, "mimo_model")
    if scene_frames is not None:
        b.connect(*scene_frames, scene, "scene")
    motion_node, slot = motion() if callable(motion) else motion
    sampler = b.add("MIMOSampler", (800, 120), size=(320, 354), **size, seed=42, steps=4, cfg=3.5,
                    context_frames=24, overlap=4)
    b.connect(c["loader"], 0, sampler, "mimo_model")
    b.connect(identity, "identity", sampler, "identity")
    b.connect(motion_node, slot, sampler, "motion")
    b.connect(scene, 0, sampler, "scene")
    decode = b.add("VAEDecode", (1160, 120), size=(200, 50))
    b.connect(sampler, 0, decode, "samples")
    b.connect(c["vae"], 0, decode, "vae")
    return identity, decode


def _composite_and_save(b: WorkflowBuilder, decode, plan, scene, video, occlusion, fps, prefix: str):
    """Paste the generated crops back over the scene and save the video at the source fps."""
    comp = b.add("MIMOComposite", (1160, 220), size=(300, 170), feather=0.1)
    b.connect(decode, 0, comp, "generated")
    b.connect(plan, "roi", comp, "roi")
    b.connect(*scene, comp, "scene")
    b.connect(*video, comp, "video")
    b.connect(*occlusion, comp, "occlusion")
    out = b.add("CreateVideo", (1500, 220), size=(240, 80))
    b.connect(comp, 0, out, "images")
    b.connect(*fps, out, "fps")
    save = b.add("SaveVideo", (1780, 120), size=(360, 360), filename_prefix=prefix)
    b.connect(out, 0, save, "video")


def _generation(b: WorkflowBuilder, motion_source, size: dict, frames_fps: int = 8):
    """Tiny models, character, white scene, sampler, decode and save; ``motion_source(b, x)`` adds
    the nodes that make the motion frames at column x and returns (node, output slot)."""
    c = _character(b)
    identity, decode = _sample(b, c, size, lambda: motion_source(b, 420))
    video = b.add("CreateVideo", (1160, 220), size=(240, 80), fps=frames_fps)
    b.connect(decode, 0, video, "images")
    save = b.add("SaveVideo", (1440, 120), size=(360, 360), filename_prefix="mimo/demo_tiny")
    b.connect(video, 0, save, "video")
    preview = b.add("PreviewImage", (800, 500), size=(240, 260), title="Prepared reference")
    b.connect(identity, "prepared_reference", preview, "images")


def demo_tiny(b: WorkflowBuilder) -> dict:
    def renders_from_file(b, x):
        return b.add("LoadImage", (x, 480), size=(320, 320), title="Motion renders", image=MOTION_NAME), "IMAGE"

    _generation(b, renders_from_file, dict(width=64, height=64))
    b.note(DEMO_NOTE, (1160, 520), size=(560, 380))
    return b.build()


def _mocap_on_body(loader: str, **loader_widgets):
    """A motion source: a mocap loader node on a body, rasterized to the motion frames."""

    def source(b, x):
        body = b.add("MIMOBodyModelLoader", (x, 480), size=(320, 60))
        motion = b.add(loader, (x, 580), size=(320, 160), **loader_widgets)
        b.connect(body, 0, motion, "body")
        render = b.add("MIMORasterizeMotion", (x, 780), size=(320, 330), width=64, height=64)
        b.connect(motion, 0, render, "motion")
        b.connect(body, 0, render, "body")
        shown = b.add("PreviewImage", (x + 360, 780), size=(240, 260), title="Motion renders")
        b.connect(render, "motion", shown, "images")
        return render, "motion"

    return source


def amass_demo_body(b: WorkflowBuilder) -> dict:
    _generation(b, _mocap_on_body("MIMOLoadAMASS", file=AMASS_NAME, fps=30.0, max_frames=12),
                dict(width=64, height=64), frames_fps=30)
    b.note(AMASS_NOTE, (1160, 520), size=(560, 380))
    return b.build()


MIXAMO_NOTE = """## MIMO: character + Mixamo motion (tiny demo weights)
A Mixamo animation is retargeted to MIMO's body (world-space rotation change from rest, root motion
scaled by leg length, feet on the floor), then rasterized to the motion frames the sampler takes.

- Download an animation from mixamo.com as **FBX Binary** (or convert to BVH) and copy it into
  `ComfyUI/input` (subfolders are fine; press R to refresh). `mimo_demo_wave.bvh` is a synthetic
  stand-in from `devtools/demo_assets.py`. Mixamo files fall under Adobe's terms.
- "Without skin" or "With skin" both work; finger joints are used when present.
- Body: the built-in demo body, or SMPL/SMPL-H/SMPL-X files (non-commercial) in `ComfyUI/models/smpl`.
  Palette: the official `sdc_info.npy` in `models/mimo` if you have it.
- Swap the tiny models for the released ones (`models/mimo`, `models/vae`, `models/clip_vision`, see
  the tiny demo's note) and use 784x784, 25 steps."""


def mixamo_demo_body(b: WorkflowBuilder) -> dict:
    _generation(b, _mocap_on_body("MIMOLoadMixamo", file=MIXAMO_NAME, fps=30.0, max_frames=0),
                dict(width=64, height=64), frames_fps=30)
    b.note(MIXAMO_NOTE, (1160, 520), size=(560, 380))
    return b.build()


TEMPLATE_NOTE = """## MIMO: replace the person in a video (official template, tiny demo weights)
The official editing mode. **MIMO Load Template** reads a template folder from `ComfyUI/input`
(`vid.mp4` video, `sdc.mp4` motion renders, `bk.mp4` scene without the person, optional `occ.mp4`
occluders and `mask.mp4`, and `config.json` with `fps` and `time_crop`), resampled and cut as the
official `run_edit.py` does (at most 150 frames by default).

- **MIMO Plan ROI** finds the body in the motion renders and splits the clip into square
  human-centred crops (a new clip when the box would grow too much; each later clip repeats the
  last 4 frames of the previous one). The sampler and the scene encoder work on these crops.
- **MIMO Composite** pastes the decoded crops back over the full-frame scene with a feathered
  edge, puts the occluders of the original video back on top and cross-fades the repeated frames.
- `mimo_templates/demo` is a synthetic template from `devtools/demo_assets.py`. Put official
  templates (e.g. from the official `assets.zip`, or made by MIMO Save Template) in
  `ComfyUI/input/mimo_templates/` and press R.
- Swap the tiny models for the released ones (`models/mimo`, `models/vae`, `models/clip_vision`; see the
  tiny demo's note) and use 784x784, 25 steps."""


def template_replace(b: WorkflowBuilder) -> dict:
    size = dict(width=64, height=64)
    c = _character(b)
    template = b.add("MIMOLoadTemplate", (0, 800), size=(360, 200), template=TEMPLATE_NAME, fps=0.0,
                     max_frames=150, time_crop=True)
    plan = b.add("MIMOPlanROI", (420, 800), size=(320, 130), **size)
    b.connect(template, "motion", plan, "motion")
    b.connect(template, "scene", plan, "scene")
    _, decode = _sample(b, c, size, (plan, "motion"), scene_frames=(plan, "scene"))
    _composite_and_save(b, decode, plan, (template, "scene"), (template, "video"), (template, "occlusion"),
                        (template, "fps"), "mimo/template_replace")
    crops = b.add("PreviewImage", (800, 800), size=(240, 260), title="ROI motion crops")
    b.connect(plan, "motion", crops, "images")
    b.note(TEMPLATE_NOTE, (1160, 520), size=(600, 420))
    return b.build()


VIDEO_REPLACE_NOTE = """## MIMO: replace the person in a raw video (tiny demo weights)
The whole pipeline from a plain video: **MIMO Decompose Video** splits it into the person's mask
(SAM 2), the scene behind the person (inpainted) and the objects in front (Depth Anything V2 + SAM 2);
**MIMO Motion From Video** estimates the person's 3D motion with the video's camera (NLF), which
**MIMO Rasterize Motion** ("motion (video camera)") draws over the source frames; then ROI planning,
MIMO and compositing as in the template workflow. Set Rasterize Motion's width/height to the video's.

Files (`ComfyUI/...`; press R after adding):
- `input/`: the video (`mimo_demo_video.mp4` is synthetic, from `devtools/demo_assets.py`).
- `models/sam2`: SAM 2 / 2.1 checkpoint (`.pt` or `.safetensors`; Apache-2.0).
- `models/depthanything`: Depth Anything V2 (`.pth`/`.safetensors`; small is Apache-2.0,
  **base/large are non-commercial**).
- `models/nlf`: NLF's `.torchscript` (e.g. `nlf_l_multi_0.3.2.torchscript`, **non-commercial**), or
  the installed `gvhmr` package (**non-commercial**). `nlf_standin.torchscript` here is a scripted
  stand-in (no network: one fixed person in every frame) from `devtools/nlf_standin.py`.
- `models/smpl`: SMPL/SMPL-H/SMPL-X (**non-commercial**) or the built-in demo body.
- `models/mimo`, `models/vae`, `models/clip_vision`: the MIMO models (tiny here; see the tiny demo's note).
- ProPainter inpainting (**non-commercial**, CUDA; `models/propainter`) is used when installed, else
  the median inpainter. The tiny SAM 2 / Depth Anything files come from
  `models/decompose/tiny_models.py`; use real ones, 784x784 and 25 steps for real results."""


def video_replace(b: WorkflowBuilder) -> dict:
    size = dict(width=64, height=64)
    c = _character(b)
    load = b.add("LoadVideo", (0, 800), size=(320, 360), title="Source video", file=VIDEO_NAME)
    parts = b.add("GetVideoComponents", (0, 1200), size=(240, 70))
    b.connect(load, 0, parts, "video")
    decompose = b.add("MIMODecomposeVideo", (420, 1200), size=(340, 300),
                      sam2_model="sam2.1_hiera_tiny.pt", depth_model="depth_anything_v2_tiny.pth", depth_size=140)
    b.connect(parts, "images", decompose, "video")
    body = b.add("MIMOBodyModelLoader", (0, 1320), size=(320, 60))
    estimate = b.add("MIMOMotionFromVideo", (420, 800), size=(340, 200), estimator=STANDIN_NAME)
    b.connect(parts, "images", estimate, "video")
    b.connect(parts, "fps", estimate, "fps")
    b.connect(body, 0, estimate, "body")
    render = b.add("MIMORasterizeMotion", (800, 800), size=(320, 330), width=128, height=96,
                   camera="motion (video camera)")
    b.connect(estimate, "motion", render, "motion")
    b.connect(body, 0, render, "body")
    plan = b.add("MIMOPlanROI", (1160, 800), size=(320, 130), **size)
    b.connect(render, "motion", plan, "motion")
    b.connect(decompose, "scene", plan, "scene")
    _, decode = _sample(b, c, size, (plan, "motion"), scene_frames=(plan, "scene"))
    _composite_and_save(b, decode, plan, (decompose, "scene"), (parts, "images"), (decompose, "occluders"),
                        (parts, "fps"), "mimo/video_replace")
    shown = b.add("PreviewImage", (1160, 1000), size=(240, 260), title="Motion renders")
    b.connect(render, "motion", shown, "images")
    human = b.add("MaskPreview", (800, 1200), size=(240, 260), title="Person mask")
    b.connect(decompose, "human_mask", human, "mask")
    b.note(VIDEO_REPLACE_NOTE, (1500, 520), size=(620, 520))
    return b.build()


BUILDERS = {"mimo_demo_tiny.json": demo_tiny, "mimo_amass_demo_body.json": amass_demo_body,
            "mimo_mixamo_demo_body.json": mixamo_demo_body,
            "mimo_template_replace.json": template_replace, "mimo_video_replace.json": video_replace}


@contextmanager
def tiny_server():
    """The pinned ComfyUI with this pack and the tiny weights, in a temporary run folder."""
    pack = load_pack()
    tiny = __import__(f"{pack.__name__}.models.generate.tiny", fromlist=["write_tiny_weights"])
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        tiny.write_tiny_weights(models)
        with ComfyServer(provision_comfyui(), REPO_ROOT, models_dir=models, run_dir=Path(tmp) / "run") as server:
            yield server


def main() -> None:
    with tiny_server() as server:
        info = server.object_info()
        for name, build in BUILDERS.items():
            (WORKFLOWS / name).write_text(json.dumps(build(WorkflowBuilder(info)), indent=1) + "\n")
            print(WORKFLOWS / name)


if __name__ == "__main__":
    main()
