"""CLIP image encoder loading (folder, single files, prefixes) and the parity of image_embeds."""

import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from mimo_pack.models.generate import image_encoder as IE, reference_prep as rp
from mimo_pack.models import image_ops

CASES = ["case_a", "case_b"]


def _case(parity_case, case):
    root = parity_case(case)
    return root, load_file(str(root / "case.safetensors"))


def _err(encoder, d):
    return (IE.encode_image(encoder, d["clip_pixel_values"]) - d["clip_image_embeds"]).abs().max().item()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=64, intermediate_size=48, num_hidden_layers=2, num_attention_heads=1,
                           patch_size=16, image_size=64, projection_dim=24)
    return CLIPVisionModelWithProjection(cfg).eval()


@pytest.mark.parametrize("case", CASES)
def test_folder_parity(case, parity_case):
    root, d = _case(parity_case, case)
    enc = IE.load_image_encoder(root / "weights" / "image_encoder")
    assert enc.config.num_attention_heads == 4 and not enc.training
    assert _err(enc, d) <= 1e-5
    # the whole chain from the recorded reference picture
    pv = rp.clip_pixel_values(image_ops.to_uint8(d["ref_image"][0]))
    assert (IE.encode_image(enc, pv) - d["clip_image_embeds"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("case", CASES)
def test_single_file_with_config_beside(case, tmp_path, parity_case):
    root, d = _case(parity_case, case)
    folder = root / "weights" / "image_encoder"
    sd = load_file(str(folder / "model.safetensors"))
    save_file({"clip_vision." + k: v for k, v in sd.items()}, str(tmp_path / "clip_vit.safetensors"))
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    assert _err(IE.load_image_encoder(tmp_path / "clip_vit.safetensors"), d) <= 1e-5
    (tmp_path / "config.json").rename(tmp_path / "clip_vit.json")  # <stem>.json works too
    assert _err(IE.load_image_encoder(tmp_path / "clip_vit.safetensors"), d) <= 1e-5


def test_single_file_without_config_warns(tmp_path, caplog, parity_case):
    root, d = _case(parity_case, "case_a")
    sd = load_file(str(root / "weights" / "image_encoder" / "model.safetensors"))
    save_file(sd, str(tmp_path / "tiny.safetensors"))
    with caplog.at_level(logging.WARNING, logger="MIMO"):
        enc = IE.load_image_encoder(tmp_path / "tiny.safetensors")
    assert "guessing 1 heads" in caplog.text and "config.json" in caplog.text
    assert enc.config.num_attention_heads == 1
    assert _err(enc, d) > 1e-3  # 4 heads cannot be read from the weights: documented limitation
    config = json.loads((root / "weights" / "image_encoder" / "config.json").read_text())
    assert _err(IE.image_encoder_from_state_dict(sd, config), d) <= 1e-5  # an explicit config fixes it


def test_round_trip_layouts(tiny, tmp_path):
    x = torch.randn(1, 3, 64, 64)
    want = IE.encode_image(tiny, x)
    sd = tiny.state_dict()
    # a full CLIPModel-style file with the text tower, logit_scale and the old position_ids buffer
    full = {**sd, "text_model.embeddings.token_embedding.weight": torch.zeros(10, 8),
            "text_projection.weight": torch.zeros(24, 8), "logit_scale": torch.tensor(2.0),
            "vision_model.embeddings.position_ids": torch.arange(17)[None]}
    torch.save(full, tmp_path / "clip.bin")
    enc = IE.load_image_encoder(tmp_path / "clip.bin")  # 64 wide -> 1 head by the fallback rule
    cfg = enc.config
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.patch_size, cfg.image_size,
            cfg.projection_dim, cfg.hidden_act) == (64, 48, 2, 16, 64, 24, "quick_gelu")
    assert torch.equal(IE.encode_image(enc, x), want)
    tiny.save_pretrained(tmp_path / "image_encoder")
    assert torch.equal(IE.encode_image(IE.load_image_encoder(tmp_path / "image_encoder"), x), want)
    half = {"image_encoder." + k: v.half() for k, v in sd.items()}
    enc16 = IE.image_encoder_from_state_dict(half)
    assert all(p.dtype == torch.float32 for p in enc16.parameters())
    torch.testing.assert_close(IE.encode_image(enc16, x), want, rtol=0, atol=5e-2)


def test_standard_widths_heads():
    def fake(hidden, positions, patch):
        return {
            IE._PATCH: torch.empty(hidden, 3, patch, patch),
            "vision_model.embeddings.position_embedding.weight": torch.empty(positions, hidden),
            "vision_model.encoder.layers.0.layer_norm1.weight": torch.empty(hidden),
            "vision_model.encoder.layers.0.mlp.fc1.weight": torch.empty(4 * hidden, hidden),
            "visual_projection.weight": torch.empty(768, hidden),
        }
    vitl = IE.infer_clip_vision_config(fake(1024, 257, 14))
    assert (vitl.num_attention_heads, vitl.image_size, vitl.intermediate_size, vitl.projection_dim) == (16, 224, 4096, 768)
    assert IE.infer_clip_vision_config(fake(768, 50, 32)).num_attention_heads == 12
    assert IE.infer_clip_vision_config(fake(1280, 257, 14)).num_attention_heads == 16
    assert IE.infer_clip_vision_config(fake(1024, 577, 14)).image_size == 336


def test_openclip_layout_rejected(tmp_path):
    sd = {"visual.conv1.weight": torch.zeros(8, 3, 4, 4),
          "visual.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(24, 8)}
    save_file(sd, str(tmp_path / "open_clip.safetensors"))
    with pytest.raises(ValueError, match=r"open_clip\.safetensors is an OpenCLIP-layout"):
        IE.load_image_encoder(tmp_path / "open_clip.safetensors")


def test_other_files_rejected(tiny, tmp_path):
    save_file({"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3)}, str(tmp_path / "vae.safetensors"))
    with pytest.raises(ValueError, match=r"vae\.safetensors is not a CLIP image encoder.*patch_embedding"):
        IE.load_image_encoder(tmp_path / "vae.safetensors")
    no_proj = {k: v for k, v in tiny.state_dict().items() if not k.startswith("visual_projection")}
    save_file(no_proj, str(tmp_path / "vision_only.safetensors"))
    with pytest.raises(ValueError, match="visual_projection"):
        IE.load_image_encoder(tmp_path / "vision_only.safetensors")
    broken = {k: v for k, v in tiny.state_dict().items() if "layers.1.mlp.fc2" not in k}
    with pytest.raises(ValueError, match="missing"):
        IE.image_encoder_from_state_dict(broken, tiny.config)
