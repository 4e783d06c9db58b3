"""MIMOOcclusionLayer, MIMOInpaintScene and MIMODecomposeVideo inside a real ComfyUI 0.3.75.

The synthetic clip of tests/test_occlusion.py (static textured scene, a person-like shape walking
under a bar in front of it) goes in as lossless animated PNGs through the core Load Image node (one
IMAGE batch per file), so the right scene and occluder layer are known to the pixel."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.comfy

_spec = importlib.util.spec_from_file_location("_mimo_test_occlusion", Path(__file__).parent / "test_occlusion.py")
synthetic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synthetic)

DECOMPOSE_NODES = ("MIMOOcclusionLayer", "MIMOInpaintScene", "MIMODecomposeVideo")
SHORT = (4, 8)  # frames of the clip used with the (slow) tiny SAM 2


def write_apng(path: Path, frames: np.ndarray) -> None:
    """[F,H,W,3] or [F,H,W] floats 0..1 -> a lossless animated PNG (8 bit)."""
    u8 = np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)
    images = [Image.fromarray(f) for f in u8]
    images[0].save(path, save_all=True, append_images=images[1:], duration=33, loop=0, disposal=0, blend=0)


@pytest.fixture(scope="module")
def server(comfy_server, comfy_models_dir):
    from mimo_pack.models.decompose.tiny_models import write_tiny_decompose_weights

    frames, humans, depth, bar, scene = synthetic.synthetic_clip()
    write_apng(comfy_server.input_dir / "decomp_video.png", frames.numpy())
    write_apng(comfy_server.input_dir / "decomp_human.png", humans.numpy())
    write_apng(comfy_server.input_dir / "decomp_depth.png", depth.numpy())
    short = slice(*SHORT)  # the bar starts cutting the person at frame 5
    write_apng(comfy_server.input_dir / "decomp_short.png", frames[short].numpy())
    write_apng(comfy_server.input_dir / "decomp_short_human.png", humans[short].numpy())
    write_apng(comfy_server.input_dir / "decomp_short_depth.png", depth[short].numpy())
    Image.fromarray(np.round(scene * 255).astype(np.uint8)).save(comfy_server.input_dir / "decomp_scene.png")
    write_tiny_decompose_weights(comfy_models_dir)
    comfy_server.object_info(refresh=True)
    comfy_server.truth = dict(frames=frames, humans=humans, bar=bar, scene=scene)
    return comfy_server


def load(name: str) -> dict:
    return {"class_type": "LoadImage", "inputs": {"image": name}}


def as_mask(node: str) -> dict:
    return {"class_type": "ImageToMask", "inputs": {"image": [node, 0], "channel": "red"}}


def save(images, prefix: str) -> dict:
    return {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": f"mimo/{prefix}"}}


def save_mask(mask, prefix: str, prompt: dict, key: str) -> None:
    prompt[f"{key}_img"] = {"class_type": "MaskToImage", "inputs": {"mask": mask}}
    prompt[key] = save([f"{key}_img", 0], prefix)


def outputs(server, result, prefix: str) -> np.ndarray:
    files = sorted(f for f in server.output_files(result) if f.name.startswith(prefix))
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


def test_decompose_nodes_are_registered_with_tooltips(server):
    info = server.object_info()
    for node in DECOMPOSE_NODES:
        assert node in info, node
        spec = info[node]["input"]
        for name, entry in {**spec["required"], **spec.get("optional", {})}.items():
            assert entry[1].get("tooltip"), f"{node}.{name} has no tooltip"
    assert "sam2.1_hiera_tiny.pt" in info["MIMODecomposeVideo"]["input"]["required"]["sam2_model"][1]["options"]


def test_inpaint_scene_median_recovers_the_scene(server):
    prompt = {"video": load("decomp_video.png"), "human_img": load("decomp_human.png"), "human": as_mask("human_img"),
              "inpaint": {"class_type": "MIMOInpaintScene", "inputs": {
                  "video": ["video", 0], "masks": ["human", 0], "method": "median", "dilate": 4, "window": 0}}}
    prompt["save"] = save(["inpaint", 0], "scene")
    result = server.run(prompt, timeout=300, check=True)
    got = outputs(server, result, "scene").astype(int)
    truth = np.round(server.truth["scene"] * 255).astype(int)
    assert got.shape == (synthetic.N, synthetic.H, synthetic.W, 3)
    assert np.abs(got - truth[None]).max() <= 1  # exact up to ComfyUI's 8-bit save (truncation)


def test_inpaint_scene_passes_a_given_scene_through_without_computing_masks(server):
    prompt = {"video": load("decomp_video.png"), "given": load("decomp_scene.png"),
              # would fail if evaluated (an RGB image has no alpha channel): the masks input is lazy
              "broken": {"class_type": "ImageToMask", "inputs": {"image": ["video", 0], "channel": "alpha"}},
              "inpaint": {"class_type": "MIMOInpaintScene", "inputs": {
                  "video": ["video", 0], "masks": ["broken", 0], "method": "median", "dilate": 4, "window": 0,
                  "scene": ["given", 0]}}}
    prompt["save"] = save(["inpaint", 0], "given")
    result = server.run(prompt, timeout=300, check=True)
    got = outputs(server, result, "given").astype(int)
    assert got.shape[0] == 1
    assert np.abs(got[0] - np.round(server.truth["scene"] * 255).astype(int)).max() <= 1


def occlusion_prompt(video: str, human: str, depth: str, **options) -> dict:
    inputs = {"video": ["video", 0], "human_mask": ["human", 0], "depth": ["depth", 0], "sam2_model": "none",
              "tracking": "static (no tracking)", "candidates": "depth regions (built-in)", "output": "hard",
              "feather": 3.0, "nearer_ratio": 0.4, "min_pixels_small": 100, "min_pixels_large": 600,
              "max_keyframes": 5, "keyframe_gap": 20}
    inputs.update(options)
    prompt = {"video": load(video), "human_img": load(human), "human": as_mask("human_img"), "depth": load(depth),
              "occ": {"class_type": "MIMOOcclusionLayer", "inputs": inputs}}
    save_mask(["occ", 0], "occ", prompt, "save")
    return prompt


def test_occlusion_layer_finds_the_bar_in_front(server):
    prompt = occlusion_prompt("decomp_video.png", "decomp_human.png", "decomp_depth.png")
    result = server.run(prompt, timeout=300, check=True)
    got = outputs(server, result, "occ")[..., 0] > 127
    assert got.shape == (synthetic.N, synthetic.H, synthetic.W)
    assert (got == server.truth["bar"][None]).all()  # the bar, in every frame; not the background


def test_occlusion_layer_tracks_with_sam2(server):
    prompt = occlusion_prompt("decomp_short.png", "decomp_short_human.png", "decomp_short_depth.png",
                              sam2_model="sam2.1_hiera_tiny.safetensors", tracking="SAM 2, both ways (official)",
                              output="soft (feathered)")
    result = server.run(prompt, timeout=300, check=True)
    got = outputs(server, result, "occ")[..., 0]
    assert got.shape == (SHORT[1] - SHORT[0], synthetic.H, synthetic.W)
    human = server.truth["humans"][slice(*SHORT)].numpy() > 0.5
    assert got[human].max() <= 128  # never over the visible person (a soft edge at most)
    log = server.log_text()  # the bar was found on keyframe 1 and handed to SAM 2
    assert "1 candidate(s) in front at frame 1, 1 new" in log
    assert "loaded from sam2.1_hiera_tiny.safetensors" in log


def test_occlusion_layer_explains_a_missing_sam2_model(server):
    prompt = occlusion_prompt("decomp_short.png", "decomp_short_human.png", "decomp_short_depth.png",
                              tracking="SAM 2, both ways (official)")
    result = server.run(prompt, timeout=300, check=False)
    assert not result.ok
    assert "need a SAM 2 model" in str(result.error) and "static (no tracking)" in str(result.error)


def test_decompose_video_on_tiny_weights(server):
    prompt = {"video": load("decomp_short.png"), "first_img": load("decomp_short_human.png"),
              "first": as_mask("first_img"),
              "decomp": {"class_type": "MIMODecomposeVideo", "inputs": {
                  "video": ["video", 0], "sam2_model": "sam2.1_hiera_tiny.pt",
                  "depth_model": "depth_anything_v2_tiny.pth", "depth_size": 140,
                  "occluders": "depth regions (built-in)",
                  "output": "soft (feathered)", "feather": 3.0, "method": "median", "dilate": 4, "window": 0,
                  "first_frame_mask": ["first", 0]}}}
    save_mask(["decomp", 0], "dhuman", prompt, "s_human")
    prompt["s_scene"] = save(["decomp", 1], "dscene")
    save_mask(["decomp", 2], "docc", prompt, "s_occ")
    prompt["s_depth"] = save(["decomp", 3], "ddepth")
    result = server.run(prompt, timeout=600, check=True)
    h, w = synthetic.H, synthetic.W
    for prefix in ("dhuman", "dscene", "docc", "ddepth"):
        got = outputs(server, result, prefix)
        assert got.shape == (SHORT[1] - SHORT[0], h, w, 3), prefix
    depth = outputs(server, result, "ddepth")
    assert depth.std() > 0 and (depth[..., 0] == depth[..., 2]).all()  # grey, varying (random tiny model)
    human = outputs(server, result, "dhuman")[..., 0] > 127
    scene = outputs(server, result, "dscene").astype(int)
    frames = np.round(server.truth["frames"][slice(*SHORT)].numpy() * 255).astype(int)
    # the scene differs from the video only where the (random-weight) person mask, dilated, says so
    import torch
    from mimo_pack.models.decompose.inpaint import dilate_masks

    region = dilate_masks(torch.from_numpy(human), 4).numpy()
    assert np.abs(scene - frames)[~region].max() <= 1
