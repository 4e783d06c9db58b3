"""VAE loading in every supported layout, and the official encode / decode conventions."""

import re

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.image_processor import VaeImageProcessor
from PIL import Image
from safetensors.torch import load_file, save_file

from mimo_pack.models.weights import CheckpointError
from mimo_pack.models import image_ops
from mimo_pack.models.generate import vae as V

N_BLOCKS = 2


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    m = AutoencoderKL(
        block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * N_BLOCKS, up_block_types=("UpDecoderBlock2D",) * N_BLOCKS,
    ).eval()
    with torch.no_grad():  # make every tensor distinctive (GroupNorm weights start at 1, biases at 0)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def to_ldm(sd: dict) -> dict:
    """diffusers AutoencoderKL keys -> original LDM keys (the layout of vae-ft-mse-840000-ema-pruned)."""
    out = {}
    for k, v in sd.items():
        n = k
        n = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.", n)
        n = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", n)
        n = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
                   lambda m: f"decoder.up.{N_BLOCKS - 1 - int(m[1])}.block.{m[2]}.", n)
        n = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                   lambda m: f"decoder.up.{N_BLOCKS - 1 - int(m[1])}.upsample.", n)
        n = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", n)
        n = n.replace("mid_block.attentions.0.", "mid.attn_1.").replace("conv_shortcut", "nin_shortcut")
        n = n.replace("conv_norm_out", "norm_out")
        if ".attn_1." in n:
            n = (n.replace("group_norm", "norm").replace("to_q", "q").replace("to_k", "k")
                 .replace("to_v", "v").replace("to_out.0", "proj_out"))
            if v.ndim == 2:
                v = v[:, :, None, None]  # LDM attention projections are 1x1 convs
        out[n] = v.clone()
    return out


def _same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _check(loaded, ref):
    assert isinstance(loaded, AutoencoderKL)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert loaded.config.scaling_factor == 0.18215
    _same_weights(loaded, ref)
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    assert torch.equal(V.encode_mean(loaded, x), V.encode_mean(ref, x))


def test_ldm_mapping_uses_real_names(tiny):
    ldm = to_ldm(tiny.state_dict())
    # names as they appear in vae-ft-mse-840000-ema-pruned.safetensors
    for k in ("encoder.down.1.block.0.nin_shortcut.weight", "decoder.up.0.block.0.nin_shortcut.weight",
              "encoder.mid.attn_1.q.weight", "decoder.mid.block_2.conv1.weight", "encoder.norm_out.weight",
              "decoder.up.1.upsample.conv.weight", "encoder.down.0.downsample.conv.weight", "quant_conv.weight"):
        assert k in ldm, k
    assert ldm["encoder.mid.attn_1.q.weight"].shape == (64, 64, 1, 1)
    assert not any("_blocks" in k or "resnets" in k for k in ldm)


def test_diffusers_folder(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "sd-vae-ft-mse")
    _check(V.load_vae(tmp_path / "sd-vae-ft-mse"), tiny)
    tiny.save_pretrained(tmp_path / "pipe" / "vae", safe_serialization=False)  # .bin, pipeline layout
    _check(V.load_vae(tmp_path / "pipe"), tiny)


def test_diffusers_single_file(tiny, tmp_path):
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(tmp_path / "vae.safetensors"))
    _check(V.load_vae(tmp_path / "vae.safetensors"), tiny)


def test_old_diffusers_attention_names(tiny, tmp_path):
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    sd = {}
    for k, v in tiny.state_dict().items():
        for new, o in old.items():
            k = k.replace(f"attentions.0.{new}.", f"attentions.0.{o}.")
        sd[k] = v
    assert "encoder.mid_block.attentions.0.proj_attn.weight" in sd
    torch.save(sd, tmp_path / "old.bin")
    _check(V.load_vae(tmp_path / "old.bin"), tiny)


@pytest.mark.parametrize("name,wrap", [("vae.safetensors", None), ("vae.ckpt", "first_stage_model."), ("vae.pt", "")])
def test_ldm_single_file(tiny, tmp_path, name, wrap):
    ldm = to_ldm(tiny.state_dict())
    path = tmp_path / name
    if wrap is None:
        save_file(ldm, str(path))
    else:  # wrapped in state_dict, optionally prefixed as in a full SD checkpoint with other parts
        sd = {wrap + k: v for k, v in ldm.items()}
        if wrap:
            sd["model.diffusion_model.conv_in.weight"] = torch.zeros(4, 4, 3, 3)
        torch.save({"state_dict": sd, "global_step": 840000}, path)
    _check(V.load_vae(path), tiny)


def test_vae_from_state_dict_ldm_in_memory(tiny):
    # ComfyUI's VAE.get_sd() gives these LDM names
    _check(V.vae_from_state_dict(to_ldm(tiny.state_dict())), tiny)


def test_width_inference():
    sd = AutoencoderKL(
        block_out_channels=(32, 64, 96), layers_per_block=2, latent_channels=8,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    ).state_dict()
    cfg = V.infer_vae_config(sd)
    assert cfg["block_out_channels"] == [32, 64, 96] and cfg["layers_per_block"] == 2
    assert cfg["latent_channels"] == 8 and len(cfg["up_block_types"]) == 3


def test_not_a_vae(tmp_path):
    unet = {"conv_in.weight": torch.zeros(32, 4, 3, 3), "down_blocks.0.resnets.0.conv1.weight": torch.zeros(32, 32, 3, 3)}
    save_file(unet, str(tmp_path / "unet.safetensors"))
    with pytest.raises(ValueError, match=r"unet\.safetensors is not a VAE.*encoder\.conv_in\.weight.*UNet"):
        V.load_vae(tmp_path / "unet.safetensors")


def test_incomplete_vae(tiny, tmp_path):
    sd = {k: v for k, v in tiny.state_dict().items() if not k.startswith("decoder.conv_out")}
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "half.safetensors"))
    with pytest.raises(ValueError, match="half.safetensors.*missing"):
        V.load_vae(tmp_path / "half.safetensors")


class _Payload:
    pass


def test_pickles_with_code_are_refused(tmp_path):
    torch.save({"state_dict": {"x": _Payload()}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="Weights only load failed"):
        V.load_vae(tmp_path / "evil.pt")


def test_encode_mean_is_the_scaled_mean(tiny):
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        want = tiny.encode(x).latent_dist.mean * 0.18215
    got = V.encode_mean(tiny, x, chunk=2)
    assert got.shape == (5, 4, 8, 8)  # two blocks: one downsampler
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert torch.equal(got, V.encode_mean(tiny, x, chunk=2))  # no sampling


def test_decode_frame_by_frame(tiny):
    z = torch.randn(3, 4, 4, 6)
    with torch.no_grad():
        want = torch.cat([tiny.decode(z[i:i + 1] / 0.18215).sample for i in range(3)])
    got = V.decode(tiny, z)
    assert got.shape == (3, 3, 8, 12) and got.dtype == torch.float32
    assert got.min() >= 0 and got.max() <= 1
    torch.testing.assert_close(got, (want / 2 + 0.5).clamp(0, 1), rtol=0, atol=1e-6)
    torch.testing.assert_close(V.decode(tiny, z, chunk=3), got, rtol=0, atol=1e-5)


def test_runs_in_the_vae_dtype(tiny):
    half = AutoencoderKL.from_config(tiny.config).to(torch.bfloat16).eval()
    half.load_state_dict(tiny.state_dict())
    lat = V.encode_mean(half, torch.zeros(1, 3, 16, 16))
    assert lat.dtype == torch.bfloat16
    assert V.decode(half, lat.float()).dtype == torch.float32


def test_signed_tensor_matches_vae_image_processor():
    img = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    proc = VaeImageProcessor(vae_scale_factor=8, do_convert_rgb=True)  # the official ref/bk processor
    want = proc.preprocess(Image.fromarray(img), height=32, width=48)
    got = image_ops.to_signed_tensor(image_ops.resize_frames(img[None], 48, 32))
    assert torch.equal(got, want)


@pytest.mark.parametrize("case,frames", [("case_a", 4), ("case_b", None)])
def test_decode_parity(case, frames, parity_case):
    root = parity_case(case)
    d = load_file(str(root / "case.safetensors"))
    last = max((k for k in d if k.startswith("latents_after_step_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    vae = V.load_vae(root / "weights" / "sd-vae-ft-mse")
    z = d[last][0].transpose(0, 1)[:frames]
    want = d["video"][0].transpose(0, 1)[:frames]
    assert (V.decode(vae, z) - want).abs().max().item() <= 1e-5
