"""AMASS -> demo body -> rasterize -> MIMO sampler, all inside a real ComfyUI."""

import json
from pathlib import Path

import numpy as np
import pytest

from mimo_pack.devtools.demo_assets import AMASS_NAME, MIXAMO_BVH, write_demo_assets
from mimo_pack.devtools.workflow_to_api import to_api

pytestmark = pytest.mark.comfy
DEMO = Path(__file__).resolve().parents[1] / "workflows" / "mimo_demo_tiny.json"


@pytest.fixture(scope="module")
def server(comfy_server):
    write_demo_assets(comfy_server.input_dir)
    comfy_server.object_info(refresh=True)
    return comfy_server


def motion_nodes(size: int = 64, frames: int = 8) -> dict:
    return {
        "body": {"class_type": "MIMOBodyModelLoader", "inputs": {"body_model": "demo body (built-in)"}},
        "amass": {"class_type": "MIMOLoadAMASS", "inputs": {"file": AMASS_NAME, "fps": 30.0,
                                                           "start_frame": 0, "max_frames": frames, "body": ["body", 0]}},
        "render": {"class_type": "MIMORasterizeMotion", "inputs": {
            "motion": ["amass", 0], "body": ["body", 0], "width": size, "height": size, "camera": "auto", "yaw": 0.0,
            "elevation": 0.0, "distance": 0.0, "focal": 0.0, "palette": "default (rest-pose colours)",
            "drop_hands": False, "supersample": 1}},
    }


def test_amass_on_the_demo_body_renders_frames(server):
    prompt = motion_nodes(size=96)
    prompt["save"] = {"class_type": "SaveImage", "inputs": {"images": ["render", 0], "filename_prefix": "mimo/render"}}
    prompt["mask"] = {"class_type": "MaskToImage", "inputs": {"mask": ["render", 1]}}
    prompt["save_mask"] = {"class_type": "SaveImage", "inputs": {"images": ["mask", 0], "filename_prefix": "mimo/sil"}}
    result = server.run(prompt, timeout=300, check=True)
    from PIL import Image

    renders = sorted(f for f in server.output_files(result) if f.name.startswith("render"))
    silhouettes = sorted(f for f in server.output_files(result) if f.name.startswith("sil"))
    assert len(renders) == 8 and len(silhouettes) == 8
    first = np.asarray(Image.open(renders[0]).convert("RGB")).astype(float)
    sil = np.asarray(Image.open(silhouettes[0]).convert("L")) > 127
    assert first.shape == (96, 96, 3)
    assert 0.03 < sil.mean() < 0.6  # a body, framed, not filling the picture
    assert (first[~sil] == 0).all() and first[sil].mean() > 20  # colours on black
    last = np.asarray(Image.open(renders[-1]).convert("RGB")).astype(float)
    assert np.abs(last - first).mean() > 0.5  # it moves


def test_renders_drive_the_sampler(server):
    prompt = to_api(json.loads(DEMO.read_text()), server.object_info())
    prompt.update(motion_nodes())
    sampler = next(n for n in prompt.values() if n["class_type"] == "MIMOSampler")
    sampler["inputs"]["motion"] = ["render", 0]
    result = server.run(prompt, timeout=600, check=True)
    videos = [f for f in server.output_files(result) if f.suffix == ".mp4"]
    import av

    with av.open(str(videos[0])) as c:
        assert sum(1 for _ in c.decode(video=0)) == 8




def test_mixamo_and_amass_drive_a_user_smpl_file(server):
    from mimo_pack.devtools.synthetic_body import write_synthetic_model

    write_synthetic_model(Path(server.models_dir) / "smpl" / "SMPLH_NEUTRAL.npz", "smplh", fmt="npz")
    (server.input_dir / "mixamo").mkdir(exist_ok=True)
    (server.input_dir / "mixamo" / "wave.bvh").write_text(MIXAMO_BVH)
    server.object_info(refresh=True)
    for loader in ("amass", "mixamo"):
        prompt = motion_nodes(size=64, frames=4)
        prompt["body"]["inputs"]["body_model"] = "SMPLH_NEUTRAL.npz"
        if loader == "mixamo":
            prompt["amass"] = {"class_type": "MIMOLoadMixamo", "inputs": {
                "file": "mixamo/wave.bvh", "fps": 30.0, "start_frame": 0, "max_frames": 0, "body": ["body", 0]}}
        prompt["save"] = {"class_type": "SaveImage", "inputs": {"images": ["render", 0], "filename_prefix": loader}}
        result = server.run(prompt, timeout=300, check=True)
        files = server.output_files(result)
        assert len(files) == 4, loader
        from PIL import Image

        pictures = [np.asarray(Image.open(f).convert("RGB")).astype(float) for f in files]
        assert all(p.max() > 0 for p in pictures), loader
