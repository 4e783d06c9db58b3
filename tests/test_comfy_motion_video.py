"""MIMOMotionFromVideo in a real ComfyUI: a scripted STAND-IN for NLF's TorchScript model (not NLF; see
tests/test_motion_from_video.py) in models/nlf -> MIMO_MOTION with the video camera -> MIMORasterizeMotion
(camera "motion (video camera)", demo body) -> SaveImage. The silhouettes must lie where the stand-in's
camera-space body projects in the source frames."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.comfy

_spec = importlib.util.spec_from_file_location("_mimo_nlf_standin", Path(__file__).with_name("test_motion_from_video.py"))
standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standin)

MODEL = "nlf_standin_test.torchscript"
CLIP = "mimo_nlf_standin_clip.png"
FRAMES, W, H = 5, standin.W, standin.H


@pytest.fixture(scope="module")
def server(comfy_server):
    person = standin.person(frames=FRAMES, seed=7)
    tables, counts = standin.build_tables([person])
    standin.write_standin(Path(comfy_server.models_dir) / "nlf" / MODEL, tables, counts)
    # the source video as an animated PNG (lossless, so the stand-in reads its frame index back)
    frames = (standin.video(FRAMES) * 255).round().to(torch.uint8).numpy()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(comfy_server.input_dir / CLIP, save_all=True, append_images=images[1:], duration=40, loop=0)
    comfy_server.object_info(refresh=True)
    return comfy_server, tables


def prompt(camera="motion (video camera)", width=W, height=H) -> dict:
    return {
        "clip": {"class_type": "LoadImage", "inputs": {"image": CLIP}},
        "body": {"class_type": "MIMOBodyModelLoader", "inputs": {"body_model": "demo body (built-in)"}},
        "motion": {"class_type": "MIMOMotionFromVideo", "inputs": {
            "video": ["clip", 0], "estimator": MODEL, "fps": 25.0, "fov_degrees": 0.0, "batch_size": 2,
            "static_camera": True, "body": ["body", 0]}},
        "render": {"class_type": "MIMORasterizeMotion", "inputs": {
            "motion": ["motion", 0], "body": ["body", 0], "width": width, "height": height, "camera": camera,
            "yaw": 0.0, "elevation": 0.0, "distance": 0.0, "focal": 0.0, "palette": "default (rest-pose colours)",
            "drop_hands": False, "supersample": 1}},
        "mask": {"class_type": "MaskToImage", "inputs": {"mask": ["render", 1]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["mask", 0], "filename_prefix": "mimo/nlf_sil"}},
    }


def test_schema_lists_the_nlf_file_and_the_video_camera(server):
    comfy, _ = server
    info = comfy.object_info()
    options = info["MIMOMotionFromVideo"]["input"]["required"]["estimator"]
    assert MODEL in (options[1]["options"] if isinstance(options[1], dict) and "options" in options[1] else options[0])
    camera = info["MIMORasterizeMotion"]["input"]["required"]["camera"]
    choices = camera[1]["options"] if isinstance(camera[1], dict) and "options" in camera[1] else camera[0]
    assert choices[-1] == "motion (video camera)" and camera[1].get("default") == "auto"


def test_motion_from_video_renders_over_the_source(server):
    comfy, tables = server
    result = comfy.run(prompt(), timeout=300, check=True)
    files = sorted(f for f in comfy.output_files(result) if f.name.startswith("nlf_sil"))
    assert len(files) == FRAMES
    got = np.stack([np.asarray(Image.open(f).convert("L")) > 127 for f in files])
    assert got.shape == (FRAMES, H, W)
    # expected: the stand-in's camera-space body through the intrinsics NLF uses by default
    f, cx, cy = standin.nlf_intrinsics()
    eye = standin.Camera(fx=f, fy=f, cx=cx + 0.5, cy=cy + 0.5, R=torch.eye(3), t=torch.zeros(3), width=W, height=H)
    body = standin.demo_body()
    _, ref = standin.render_motion(tables["vertices"][:, 0].float() / 1000, body.faces, torch.ones(body.num_vertices, 1),
                                   W, H, camera=eye)
    ref = ref.numpy() > 0.5
    assert ref.sum(axis=(1, 2)).min() > 200
    iou = (got & ref).sum(axis=(1, 2)) / (got | ref).sum(axis=(1, 2))
    assert iou.min() > 0.99, iou


def test_motion_camera_needs_a_motion_from_video(server):
    from mimo_pack.devtools.demo_assets import AMASS_NAME, write_demo_assets

    comfy, _ = server
    write_demo_assets(comfy.input_dir)
    comfy.object_info(refresh=True)
    p = prompt(width=64, height=64)
    p["motion"] = {"class_type": "MIMOLoadAMASS", "inputs": {"file": AMASS_NAME, "fps": 30.0, "start_frame": 0,
                                                             "max_frames": 2, "body": ["body", 0]}}
    result = comfy.run(p, timeout=120, check=False)
    assert not result.ok
    assert "has none: only motions made from a video" in result.error["exception_message"]


def test_missing_estimator_file_names_the_folders(server):
    comfy, _ = server
    p = prompt()
    p["motion"]["inputs"]["estimator"] = "missing.torchscript"
    result = comfy.run(p, timeout=120, check=False)
    message = result.error["exception_message"]
    assert "'missing.torchscript' was not found in the 'nlf' model folders" in message
    assert str(Path(comfy.models_dir) / "nlf") in message
