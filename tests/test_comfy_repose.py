"""MIMOCanonicalRepose in a real ComfyUI: A-pose drive, one MIMO frame, pass-through switch."""

import pytest

from mimo_pack.devtools.demo_assets import REFERENCE_NAME, write_demo_assets

pytestmark = pytest.mark.comfy


def prompt(enabled: bool) -> dict:
    return {
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "mimo-tiny-vae.safetensors"}},
        "model": {"class_type": "MIMOModelLoader", "inputs": {
            "denoising_unet": "tiny/denoising_unet.pth", "reference_unet": "tiny/reference_unet.pth",
            "pose_guider": "tiny/pose_guider.pth", "motion_module": "tiny/motion_module.pth", "vae_name": "none",
            "image_encoder_name": "mimo-tiny-image-encoder.safetensors", "precision": "auto", "vae": ["vae", 0]}},
        "body": {"class_type": "MIMOBodyModelLoader", "inputs": {"body_model": "demo body (built-in)"}},
        "image": {"class_type": "LoadImage", "inputs": {"image": REFERENCE_NAME}},
        "matte": {"class_type": "InvertMask", "inputs": {"mask": ["image", 1]}},
        "repose": {"class_type": "MIMOCanonicalRepose", "inputs": {
            "mimo_model": ["model", 0], "reference": ["image", 0], "body": ["body", 0], "width": 64, "height": 96,
            "enabled": enabled, "seed": 1, "steps": 2, "cfg": 3.5, "arm_angle": 45.0,
            "palette": "default (rest-pose colours)", "mask": ["matte", 0]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["repose", 0], "filename_prefix": f"repose_{enabled}"}},
        "save_drive": {"class_type": "SaveImage", "inputs": {"images": ["repose", 1], "filename_prefix": "drive"}},
    }


def test_repose_node(comfy_server):
    from PIL import Image

    write_demo_assets(comfy_server.input_dir)
    on = comfy_server.run(prompt(True), timeout=300, check=True)
    files = {f.name.split("_0")[0]: f for f in comfy_server.output_files(on)}
    assert Image.open(files["repose_True"]).size == (64, 96)
    assert Image.open(files["drive"]).size == (64, 96)
    off = comfy_server.run(prompt(False), timeout=300, check=True)
    passed = next(f for f in comfy_server.output_files(off) if f.name.startswith("repose_False"))
    assert Image.open(passed).size == (64, 64)  # the reference itself
