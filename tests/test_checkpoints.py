"""Loading the four MIMO files: layouts, load order, and errors that name the wrong file."""

import pytest
import torch
from safetensors.torch import save_file

from mimo_pack.models.generate import checkpoints as ck
from mimo_pack.models.generate import tiny
from mimo_pack.models.generate.loading import MIMOFiles, load_mimo_networks, pick_dtype


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    paths = tiny.write_tiny_weights(root)
    return {k: v for k, v in paths.items()}


def _files(paths, **override):
    args = {k: paths[k] for k in ("denoising_unet", "reference_unet", "pose_guider", "motion_module")}
    args.update(override)
    return MIMOFiles(**args)


def _same(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_files_are_classified(weights):
    for slot in ck.MIMO_FILES:
        assert ck.classify(ck.read_state_dict(weights[slot])) == slot
    assert ck.classify(ck.read_state_dict(weights["vae"])) == "vae"
    assert ck.classify(ck.read_state_dict(weights["image_encoder"])) == "clip_vision"


def test_official_layout_loads_every_key(weights):
    den, ref, pg = load_mimo_networks(_files(weights))
    spatial = ck.read_state_dict(weights["denoising_unet"])
    motion = ck.read_state_dict(weights["motion_module"])
    assert set(den.state_dict()) == set(spatial) | set(motion)
    for k, v in {**spatial, **motion}.items():
        assert torch.equal(den.state_dict()[k], v), k
    assert set(ref.state_dict()) == set(ck.read_state_dict(weights["reference_unet"]))
    assert not any(k.startswith(("conv_norm_out", "conv_out")) for k in ref.state_dict())
    assert len(den.transformer_blocks()) == len(ref.transformer_blocks())


def test_denoiser_with_motion_keys_inside_and_safetensors(weights, tmp_path):
    full = {**ck.read_state_dict(weights["denoising_unet"]), **ck.read_state_dict(weights["motion_module"])}
    single = tmp_path / "denoising_full.safetensors"
    save_file(full, str(single))
    a, _, _ = load_mimo_networks(_files(weights))
    b, _, _ = load_mimo_networks(_files(weights, denoising_unet=single, motion_module=None))
    _same(a, b)


def test_combined_single_file(weights, tmp_path):
    parts = {slot: ck.read_state_dict(weights[slot]) for slot in ck.MIMO_FILES}
    combined = tmp_path / "mimo_combined.safetensors"
    save_file(ck.combine(parts), str(combined))
    a = load_mimo_networks(_files(weights))
    b = load_mimo_networks(MIMOFiles(denoising_unet=combined))
    for x, y in zip(a, b):
        _same(x, y)


def test_missing_motion_module_is_named(weights):
    with pytest.raises(ck.CheckpointError, match="motion_module.pth"):
        load_mimo_networks(_files(weights, motion_module=None))


@pytest.mark.parametrize("slot,wrong", [("reference_unet", "pose_guider"), ("pose_guider", "motion_module"),
                                        ("motion_module", "reference_unet"), ("denoising_unet", "vae")])
def test_wrong_file_in_a_slot_says_which(weights, slot, wrong):
    with pytest.raises(ck.CheckpointError) as e:
        load_mimo_networks(_files(weights, **{slot: weights[wrong]}))
    message = str(e.value)
    assert weights[wrong].name in message and slot in message


def test_base_unet_is_zero_padded_then_overridden(weights):
    den_sd = ck.read_state_dict(weights["denoising_unet"])
    base_sd = {k: v.clone() for k, v in den_sd.items()}
    base_sd["conv_in.weight"] = base_sd["conv_in.weight"][:, :4] + 1.0  # an SD1.5-like 4-channel conv_in
    config = ck.infer_unet_config(den_sd)
    motion = ck.read_state_dict(weights["motion_module"])
    only_base = ck.build_denoiser(None, motion, base=(config, base_sd))
    w = only_base.conv_in.weight
    assert torch.equal(w[:, :4], base_sd["conv_in.weight"]) and torch.count_nonzero(w[:, 4:]) == 0
    later_wins = ck.build_denoiser(den_sd, motion, base=(config, base_sd))
    assert torch.equal(later_wins.conv_in.weight, den_sd["conv_in.weight"])


def test_shape_mismatch_is_explained(weights, tmp_path):
    ref = ck.read_state_dict(weights["reference_unet"])
    ref["conv_in.weight"] = torch.zeros(16, 4, 3, 3)
    bad = tmp_path / "reference_unet.pth"
    torch.save(ref, bad)
    with pytest.raises(ck.CheckpointError, match="shape"):
        load_mimo_networks(_files(weights, reference_unet=bad))


def test_code_in_a_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "pose_guider.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(ck.CheckpointError, match="Could not read"):
        ck.read_state_dict(path)


def test_auto_precision_is_the_official_fp16_on_a_gpu(caplog):
    # bf16 is only what was asked for: it is as fast as fp16 and 7-8x farther from the fp32 video
    assert pick_dtype("auto", torch.device("cuda")) is torch.float16
    assert pick_dtype("bf16", torch.device("cuda")) is torch.bfloat16
    assert pick_dtype("auto", torch.device("cpu")) is torch.float32
    assert pick_dtype("fp16", torch.device("cpu")) is torch.float32 and "not supported" in caplog.text
    with pytest.raises(ValueError, match="auto, fp32, fp16 or bf16"):
        pick_dtype("fp8", torch.device("cuda"))
