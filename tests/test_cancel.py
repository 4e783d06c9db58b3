"""Cancel: every long loop has cancel points (the sampler's windows and the layers inside a forward,
depth chunks, rasterizing, inpainting, template reading), and after a cancel no reference to the
run's tensors is left (live tensor bytes back to their level before the run)."""

import gc
import warnings

import numpy as np
import pytest
import torch

from mimo_pack.models.cancel import checks_between_layers
from mimo_pack.models.composite import template as tp
from mimo_pack.models.decompose import depth, inpaint, tiny_models
from mimo_pack.models.generate import pipeline, tiny
from mimo_pack.models.generate.loading import MIMOFiles, load_mimo
from mimo_pack.models.render import render_motion


class Cancelled(Exception):
    pass


def cancel_after(calls: int):
    seen = [0]

    def check(*_):
        seen[0] += 1
        if seen[0] >= calls:
            raise Cancelled

    return check, seen


def live_tensor_bytes() -> int:
    gc.collect()
    storages = {}
    with warnings.catch_warnings():  # isinstance on deprecated torch aliases warns
        warnings.simplefilter("ignore")
        objects = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    for obj in objects:
        try:
            if obj.device.type == "cpu":
                s = obj.untyped_storage()
                storages[s.data_ptr()] = s.nbytes()
        except Exception:  # noqa: BLE001  (objects that do not answer isinstance/storage)
            continue
    return sum(storages.values())


def no_leak(run, slack: int = 1 << 20) -> None:
    """``run()`` is cancelled (raises Cancelled); afterwards the live tensors are back to their level."""
    before = live_tensor_bytes()
    with pytest.raises(Cancelled):
        run()
    after = live_tensor_bytes()
    assert after - before < slack, f"{(after - before) / 2**20:.1f} MiB of the run's tensors are still referenced"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    paths = tiny.write_tiny_weights(tmp_path_factory.mktemp("models"))
    files = MIMOFiles(paths["denoising_unet"], paths["reference_unet"], paths["pose_guider"], paths["motion_module"],
                      vae=paths["vae"], image_encoder=paths["image_encoder"])
    return load_mimo(files)


def sampler_inputs(models, frames=30, size=96):
    rng = np.random.default_rng(0)
    identity = pipeline.encode_identity(models, rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), size, size)
    scene = pipeline.encode_scene(models, None, size, size)
    motion = rng.integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
    return identity, motion, scene


def test_layers_are_cancel_points_inside_one_forward(models):
    identity, motion, scene = sampler_inputs(models)
    check, seen = cancel_after(5)
    steps_seen = []
    with pytest.raises(Cancelled), checks_between_layers(check, interval=0):
        pipeline.sample(models, identity, motion, scene, 96, 96, steps=3, cfg=2.0, callback=steps_seen.append)
    assert seen[0] == 5 and steps_seen == []  # stopped inside the first window's forward, before any step ended
    # the hook is gone after the block: a forward runs without calling check again
    pipeline.sample(models, identity, motion[:4], scene, 96, 96, steps=1, cfg=1.0)
    assert seen[0] == 5


def test_cancelled_sampler_keeps_no_tensors(models):
    identity, motion, scene = sampler_inputs(models)

    def by_callback():
        check, _ = cancel_after(2)
        pipeline.sample(models, identity, motion, scene, 96, 96, steps=3, cfg=2.0, callback=check)

    def by_layer():
        check, _ = cancel_after(40)
        with checks_between_layers(check, interval=0):
            pipeline.sample(models, identity, motion, scene, 96, 96, steps=3, cfg=2.0)

    no_leak(by_callback)
    no_leak(by_layer)


def test_rasterize_inpaint_template_depth_stop_at_their_cancel_points(tmp_path):
    torch.manual_seed(0)
    verts = torch.rand(12, 300, 3) - 0.5
    faces = torch.randint(0, 300, (400, 3))
    colours = torch.rand(300, 3)
    calls = []
    render_motion(verts, faces, colours, 64, 64, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (12, 12) and len(calls) >= 6  # every chunk of frames on the CPU
    no_leak(lambda: render_motion(verts, faces, colours, 128, 128, progress=cancel_after(2)[0]))

    frames = torch.rand(20, 64, 64, 3)
    masks = torch.zeros(20, 64, 64)
    masks[:, 20:40, 20:40] = 1
    no_leak(lambda: inpaint.inpaint_scene(frames, masks, method="median", progress=cancel_after(1)[0]))

    folder = tmp_path / "t"
    video = np.random.default_rng(1).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    tp.write_template(folder, video, video, video, 30)
    no_leak(lambda: tp.load_template(folder, progress=cancel_after(2)[0]))

    weights = tiny_models.write_tiny_depth_anything(tmp_path / "da", layouts=("safetensors",))
    path = next(iter(weights.values())) if isinstance(weights, dict) else weights
    no_leak(lambda: depth.estimate_depth(frames, path, input_size=56, chunk=4, progress=cancel_after(2)[0]))
    check, seen = cancel_after(3)
    with pytest.raises(Cancelled), checks_between_layers(check, interval=0):
        depth.estimate_depth(frames, path, input_size=56, chunk=20)  # one chunk: stopped inside its forward
    assert seen[0] == 3


def test_the_leak_check_sees_a_kept_tensor():
    kept = []

    def leaky():
        kept.append(torch.zeros(1 << 20))  # 4 MiB held after the cancel
        raise Cancelled

    with pytest.raises(AssertionError, match="still referenced"):
        no_leak(leaky)
