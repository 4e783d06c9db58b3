"""Depth Anything V2 (models/decompose/depth.py): checkpoint layouts, the original -> transformers key
remap (checked against an independent re-implementation of the original network), size detection for
every released encoder, the official resize rule, and the depth orientation (larger = nearer)."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from mimo_pack.models.decompose import depth, tiny_models
from mimo_pack.models.weights import CheckpointError

# The released encoders: DINOv2 width, depth, heads, DPT features, reassemble channels, taps (0-based).
ENCODERS = {
    "vits": (384, 12, 6, 64, [48, 96, 192, 384], [2, 5, 8, 11]),
    "vitb": (768, 12, 12, 128, [96, 192, 384, 768], [2, 5, 8, 11]),
    "vitl": (1024, 24, 16, 256, [256, 512, 1024, 1024], [4, 11, 17, 23]),
    "vitg": (1536, 40, 24, 384, [1536, 1536, 1536, 1536], [9, 19, 29, 39]),
}


def original_shapes(hidden, layers, features, channels, swiglu=False, grid=37) -> dict[str, tuple]:
    """Key -> shape of an original ``DepthAnythingV2`` checkpoint (written from the official module
    structure: DINOv2 ``pretrained`` + ``DPTHead``)."""
    s = {"pretrained.cls_token": (1, 1, hidden), "pretrained.mask_token": (1, hidden),
         "pretrained.pos_embed": (1, grid * grid + 1, hidden),
         "pretrained.patch_embed.proj.weight": (hidden, 3, 14, 14), "pretrained.patch_embed.proj.bias": (hidden,),
         "pretrained.norm.weight": (hidden,), "pretrained.norm.bias": (hidden,)}
    mlp = (4 * hidden * 2 // 3 + 7) // 8 * 8 if swiglu else 4 * hidden
    for i in range(layers):
        b = f"pretrained.blocks.{i}."
        s.update({b + "norm1.weight": (hidden,), b + "norm1.bias": (hidden,), b + "norm2.weight": (hidden,),
                  b + "norm2.bias": (hidden,), b + "attn.qkv.weight": (3 * hidden, hidden),
                  b + "attn.qkv.bias": (3 * hidden,), b + "attn.proj.weight": (hidden, hidden),
                  b + "attn.proj.bias": (hidden,), b + "ls1.gamma": (hidden,), b + "ls2.gamma": (hidden,)})
        if swiglu:
            s.update({b + "mlp.w12.weight": (2 * mlp, hidden), b + "mlp.w12.bias": (2 * mlp,),
                      b + "mlp.w3.weight": (hidden, mlp), b + "mlp.w3.bias": (hidden,)})
        else:
            s.update({b + "mlp.fc1.weight": (mlp, hidden), b + "mlp.fc1.bias": (mlp,),
                      b + "mlp.fc2.weight": (hidden, mlp), b + "mlp.fc2.bias": (hidden,)})
    h = "depth_head."
    for i, c in enumerate(channels):
        s.update({h + f"projects.{i}.weight": (c, hidden, 1, 1), h + f"projects.{i}.bias": (c,),
                  h + f"scratch.layer{i + 1}_rn.weight": (features, c, 3, 3)})
    for i, k in ((0, 4), (1, 2), (3, 3)):  # 4x and 2x transposed convs, a stride-2 3x3 conv
        c = channels[i]
        s.update({h + f"resize_layers.{i}.weight": (c, c, k, k), h + f"resize_layers.{i}.bias": (c,)})
    for r in range(1, 5):
        p = h + f"scratch.refinenet{r}."
        s.update({p + "out_conv.weight": (features, features, 1, 1), p + "out_conv.bias": (features,)})
        for u in (1, 2):
            for c in (1, 2):
                s.update({p + f"resConfUnit{u}.conv{c}.weight": (features, features, 3, 3),
                          p + f"resConfUnit{u}.conv{c}.bias": (features,)})
    half = features // 2
    s.update({h + "scratch.output_conv1.weight": (half, features, 3, 3), h + "scratch.output_conv1.bias": (half,),
              h + "scratch.output_conv2.0.weight": (32, half, 3, 3), h + "scratch.output_conv2.0.bias": (32,),
              h + "scratch.output_conv2.2.weight": (1, 32, 1, 1), h + "scratch.output_conv2.2.bias": (1,)})
    return s


def original_forward(sd: dict, x: torch.Tensor, taps: list[int], heads: int) -> torch.Tensor:
    """The original Depth Anything V2 forward on original-layout weights, written independently of
    transformers: DINOv2 (pre-norm blocks, layer scale, taps normalised by the final norm) and the
    DPT head (1x1 projections, resize convs, 3x3 rn convs, fusion from the deepest level up)."""
    b, _, hh, ww = x.shape
    ph, pw = hh // 14, ww // 14
    dim = sd["pretrained.pos_embed"].shape[-1]
    t = F.conv2d(x, sd["pretrained.patch_embed.proj.weight"], sd["pretrained.patch_embed.proj.bias"], stride=14)
    t = torch.cat([sd["pretrained.cls_token"].expand(b, -1, -1), t.flatten(2).transpose(1, 2)], 1)
    t = t + sd["pretrained.pos_embed"]
    n = t.shape[1]
    taken = []
    for i in range(max(taps) + 1):
        def w(name, i=i):
            return sd[f"pretrained.blocks.{i}.{name}"]

        y = F.layer_norm(t, (dim,), w("norm1.weight"), w("norm1.bias"), 1e-6)
        qkv = F.linear(y, w("attn.qkv.weight"), w("attn.qkv.bias")).reshape(b, n, 3, heads, dim // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) * (dim // heads) ** -0.5, -1) @ v
        a = F.linear(a.transpose(1, 2).reshape(b, n, dim), w("attn.proj.weight"), w("attn.proj.bias"))
        t = t + w("ls1.gamma") * a
        y = F.layer_norm(t, (dim,), w("norm2.weight"), w("norm2.bias"), 1e-6)
        y = F.gelu(F.linear(y, w("mlp.fc1.weight"), w("mlp.fc1.bias")))
        y = F.linear(y, w("mlp.fc2.weight"), w("mlp.fc2.bias"))
        t = t + w("ls2.gamma") * y
        if i in taps:
            taken.append(F.layer_norm(t, (dim,), sd["pretrained.norm.weight"], sd["pretrained.norm.bias"], 1e-6))
    h = "depth_head."
    levels = []
    for i, o in enumerate(taken):
        z = o[:, 1:].transpose(1, 2).reshape(b, dim, ph, pw)
        z = F.conv2d(z, sd[h + f"projects.{i}.weight"], sd[h + f"projects.{i}.bias"])
        resize = sd.get(h + f"resize_layers.{i}.weight"), sd.get(h + f"resize_layers.{i}.bias")
        if i in (0, 1):
            z = F.conv_transpose2d(z, *resize, stride=4 // (i + 1))
        elif i == 3:
            z = F.conv2d(z, *resize, stride=2, padding=1)
        levels.append(F.conv2d(z, sd[h + f"scratch.layer{i + 1}_rn.weight"], padding=1))

    def rcu(z, p):
        out = F.conv2d(F.relu(z), sd[p + "conv1.weight"], sd[p + "conv1.bias"], padding=1)
        return F.conv2d(F.relu(out), sd[p + "conv2.weight"], sd[p + "conv2.bias"], padding=1) + z

    def fuse(r, z, skip=None, size=None):
        p = h + f"scratch.refinenet{r}."
        if skip is not None:
            z = z + rcu(skip, p + "resConfUnit1.")
        z = rcu(z, p + "resConfUnit2.")
        z = F.interpolate(z, **({"size": size} if size else {"scale_factor": 2}), mode="bilinear", align_corners=True)
        return F.conv2d(z, sd[p + "out_conv.weight"], sd[p + "out_conv.bias"])

    l1, l2, l3, l4 = levels
    path = fuse(4, l4, size=l3.shape[2:])
    path = fuse(3, path, l3, size=l2.shape[2:])
    path = fuse(2, path, l2, size=l1.shape[2:])
    path = fuse(1, path, l1)
    out = F.conv2d(path, sd[h + "scratch.output_conv1.weight"], sd[h + "scratch.output_conv1.bias"], padding=1)
    out = F.interpolate(out, (ph * 14, pw * 14), mode="bilinear", align_corners=True)
    out = F.conv2d(out, sd[h + "scratch.output_conv2.0.weight"], sd[h + "scratch.output_conv2.0.bias"], padding=1)
    out = F.relu(out)
    out = F.relu(F.conv2d(out, sd[h + "scratch.output_conv2.2.weight"], sd[h + "scratch.output_conv2.2.bias"]))
    return F.relu(out).squeeze(1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    layouts = ("pth", "safetensors", "transformers")
    return tiny_models.write_tiny_depth_anything(tmp_path_factory.mktemp("da"), layouts=layouts)


def test_original_layout_matches_the_official_module_structure(files):
    sd = torch.load(files["pth"], weights_only=True)
    t = tiny_models.TINY_DEPTH
    want = original_shapes(t["hidden"], t["layers"], t["fusion"], t["channels"])
    assert {k: tuple(v.shape) for k, v in sd.items()} == want


def test_remap_equals_the_original_network_and_a_directly_built_model(files):
    original = {k: v.double() for k, v in torch.load(files["pth"], weights_only=True).items()}
    direct = tiny_models.tiny_depth_anything().double()
    x = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = x[..., :280, :378]  # another size: position embeddings interpolated (the same way in both models)
    reference = original_forward(original, x, taps=[0, 1, 2, 3], heads=1)  # at 518 nothing is interpolated
    with torch.no_grad():
        want_x, want_y = direct(pixel_values=x).predicted_depth, direct(pixel_values=y).predicted_depth
        assert torch.allclose(want_x, reference, atol=1e-10, rtol=0)
        for layout in ("pth", "safetensors", "transformers"):
            model = depth.load_depth_anything(files[layout], device="cpu", dtype=torch.float64)
            assert torch.equal(model(pixel_values=x).predicted_depth, want_x), layout
            assert torch.equal(model(pixel_values=y).predicted_depth, want_y), layout


def test_remap_round_trip_and_unknown_keys(files):
    sd = torch.load(files["pth"], weights_only=True)
    back = depth.transformers_to_original(depth.original_to_transformers(sd))
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    with pytest.raises(CheckpointError, match="pretrained.blocks.0.attn.weird"):
        depth.original_to_transformers({**sd, "pretrained.blocks.0.attn.weird.weight": torch.zeros(1)})


def test_transformers_4_names_convert_both_ways():
    """transformers 4.x named the DINOv2 attention ``attention.attention.query`` and packed SwiGLU in
    ``weights_in``: files and models of either generation meet."""
    from transformers import DepthAnythingForDepthEstimation

    config = tiny_models.tiny_depth_config(swiglu=True)
    with torch.device("meta"):
        current = DepthAnythingForDepthEstimation(config).state_dict()
    legacy_keys = [k.replace("attention.q_proj", "attention.attention.query").replace("mlp.gate_proj", "mlp.weights_in")
                   for k in current if ".mlp.up_proj." not in k]
    old = depth._to_model_names(current, legacy_keys)
    assert "backbone.encoder.layer.0.attention.attention.query.weight" in old
    assert "backbone.encoder.layer.0.attention.output.dense.weight" in old
    mlp = "backbone.encoder.layer.0.mlp."
    assert old[mlp + "weights_in.weight"].shape[0] == 2 * current[mlp + "gate_proj.weight"].shape[0]
    assert not any("q_proj" in k or "gate_proj" in k or "up_proj" in k or "down_proj" in k for k in old)
    back = depth._to_model_names(old, current.keys())
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in current.items()}


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_every_released_encoder_is_detected_and_fits(encoder):
    from transformers import DepthAnythingForDepthEstimation

    hidden, layers, heads, features, channels, taps = ENCODERS[encoder]
    shapes = original_shapes(hidden, layers, features, channels, swiglu=encoder == "vitg")
    sd = depth.original_to_transformers({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    config = depth.depth_anything_config(sd, f"depth_anything_v2_{encoder}.pth")
    bc = config.backbone_config
    assert (bc.hidden_size, bc.num_hidden_layers, bc.num_attention_heads) == (hidden, layers, heads)
    assert bc.out_indices == [t + 1 for t in taps] and bc.use_swiglu_ffn == (encoder == "vitg")
    assert (config.fusion_hidden_size, config.neck_hidden_sizes) == (features, channels)
    assert config.depth_estimation_type == "relative"
    with torch.device("meta"):
        model = DepthAnythingForDepthEstimation(config)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in sd.items()}
    millions = sum(v.numel() for v in sd.values()) / 1e6
    if encoder == "vits":
        assert round(millions, 2) == 24.79  # the published parameter counts
    if encoder == "vitl":
        assert round(millions, 2) == 335.32


def test_metric_files_are_recognised_by_name(tmp_path):
    paths = tiny_models.write_tiny_depth_anything(tmp_path, metric=True, layouts=("safetensors",))
    model = depth.load_depth_anything(paths["safetensors"], device="cpu")
    assert model.config.depth_estimation_type == "metric" and model.config.max_depth == 20


def test_network_size_follows_the_original_lower_bound_rule():
    assert depth.network_size(480, 640) == (518, 686)
    assert depth.network_size(720, 1280) == (518, 924)
    assert depth.network_size(518, 518) == (518, 518)
    assert depth.network_size(100, 50) == (1036, 518)
    assert depth.network_size(64, 96, 56) == (56, 84)
    for h, w in ((480, 640), (1080, 1920), (333, 777)):
        nh, nw = depth.network_size(h, w)
        assert nh % 14 == 0 and nw % 14 == 0 and min(nh, nw) >= 518


class RedChannel(torch.nn.Module):
    """A stand-in whose 'depth' is the input's red channel (un-normalised): a known function."""

    def __init__(self, metric=False):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.config = SimpleNamespace(depth_estimation_type="metric" if metric else "relative")

    def forward(self, pixel_values):
        red = pixel_values[:, 0] * depth.IMAGE_STD[0] + depth.IMAGE_MEAN[0]
        metres = self.config.depth_estimation_type == "metric"
        return SimpleNamespace(predicted_depth=self.scale * (1 + 9 * red if metres else red))


def test_orientation_larger_is_nearer_and_per_frame_normalisation():
    ramp = torch.linspace(0.1, 0.9, 140).view(1, 1, 140, 1).expand(2, 70, 140, 3).clone()
    ramp[1] = ramp[1] * 0.5  # a darker second frame: normalised on its own
    out = depth.predict_depth(RedChannel(), ramp, input_size=56)
    assert out.shape == (2, 70, 140)
    for f in out:
        assert f.min() == 0 and f.max() == 1
        row = f[35]
        assert (row[1:] >= row[:-1] - 1e-6).all()  # brighter red = larger output = nearer, not inverted
        assert torch.allclose(row, torch.linspace(0, 1, 140), atol=0.02)
    raw = depth.predict_depth(RedChannel(), ramp, input_size=56, normalize=False)
    assert torch.allclose(raw[0, 35], torch.linspace(0.1, 0.9, 140), atol=0.01)
    # metric models predict metres (here larger where redder = farther): inverted, so nearer is larger again
    metric = depth.predict_depth(RedChannel(metric=True), ramp, input_size=56)
    assert (metric[0, 35, 1:] <= metric[0, 35, :-1] + 1e-6).all() and metric[0, 35, 0] > 0.999
    flat = depth.predict_depth(RedChannel(), torch.full((1, 20, 30, 3), 0.5), input_size=28)
    assert torch.equal(flat, torch.zeros(1, 20, 30))  # a constant map: zeros, not NaN


def test_estimate_depth_on_tiny_weights(files):
    frames = torch.rand(5, 48, 80, 3, generator=torch.Generator().manual_seed(3))
    progress = []
    out = depth.estimate_depth(frames, files["safetensors"], input_size=56, device="cpu", chunk=2,
                               progress=lambda done, total: progress.append((done, total)))
    assert out.shape == (5, 48, 80) and out.dtype == torch.float32
    assert torch.allclose(out.amin(dim=(1, 2)), torch.zeros(5)) and torch.allclose(out.amax(dim=(1, 2)), torch.ones(5))
    assert progress == [(2, 5), (4, 5), (5, 5)]
    want = depth.predict_depth(tiny_models.tiny_depth_anything(), frames, input_size=56, chunk=5)
    assert torch.allclose(out, want, atol=1e-5)
    with pytest.raises(ValueError, match="\\[frames, height, width, 3\\]"):
        depth.estimate_depth(frames[0], files["pth"])


def test_other_files_are_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(2)}, str(tmp_path / "sam2.safetensors"))
    with pytest.raises(CheckpointError, match="not a Depth Anything"):
        depth.load_depth_anything(tmp_path / "sam2.safetensors", device="cpu")
