"""Palette recovery round trip: a synthetic sdc.mp4 rendered with a known palette from a known motion,
H.264-encoded and decoded, then recovered with the exact poses and with perturbed ones (2 cm / 3 degrees)."""

import json

import av
import numpy as np
import torch

from mimo_pack.models.body.demo import demo_body
from mimo_pack.models.composite.template import write_video
from mimo_pack.models.motion import Motion
from mimo_pack.models.render import make_camera, render_motion
from mimo_pack.models.render.recover import fill_unseen, recover_palette, weighted_median

SIZE, FRAMES = 256, 12


def known_palette(rest):
    v = (rest - rest.min(0).values) / (rest.max(0).values - rest.min(0).values)
    return torch.stack([0.5 + 0.4 * torch.sin(3 * v[:, 0] + 2 * v[:, 1]), 0.2 + 0.7 * v[:, 1],
                        0.5 + 0.4 * torch.cos(4 * v[:, 2] + v[:, 0])], -1).float()


def motion(seed=0, noise_m=0.0, noise_deg=0.0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, FRAMES)
    body = np.zeros((FRAMES, 21, 3))
    body[:, 15, 2] = -1.2 + 0.4 * np.sin(t)  # left shoulder down / waving
    body[:, 16, 2] = 1.2
    body[:, 0, 0] = 0.3 * np.sin(t)  # left hip
    root = np.stack([np.zeros(FRAMES), t * (FRAMES - 1) / FRAMES, np.zeros(FRAMES)], -1)  # turns all the way round
    trans = np.stack([0.1 * t, np.zeros(FRAMES), np.zeros(FRAMES)], -1)
    if noise_deg:
        body = body + rng.normal(0, np.radians(noise_deg) / np.sqrt(3), body.shape)
        root = root + rng.normal(0, np.radians(noise_deg) / np.sqrt(3), root.shape)
    if noise_m:
        trans = trans + rng.normal(0, noise_m / np.sqrt(3), trans.shape)
    return Motion(root_orient=root, body_pose=body, trans=trans, fps=30.0)


def test_weighted_median_and_fill():
    idx = torch.tensor([0, 0, 0, 2, 2])
    val = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7])
    w = torch.tensor([1.0, 1.0, 5.0, 1.0, 3.0])
    out = weighted_median(idx, val, w, 3)
    assert out[0] == 0.5 and torch.isnan(out[1]) and out[2] == 0.7
    colours = torch.tensor([[0.0], [float("nan")], [1.0], [float("nan")]])
    filled, left = fill_unseen(colours, torch.tensor([[0, 1, 2]]))
    assert left == 1 and filled[1, 0] == 0.5 and filled[3, 0] == 0.5


def test_palette_round_trip_through_h264(tmp_path):
    body = demo_body()
    palette = known_palette(body.rest_vertices())
    verts, _ = body.pose(motion().params())
    camera = make_camera(verts, SIZE, SIZE, "auto")
    images, _ = render_motion(verts, body.faces, palette, SIZE, SIZE, camera=camera)
    frames = (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    path = write_video(tmp_path / "sdc.mp4", frames, 30.0)
    with av.open(str(path)) as c:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    sdc = torch.from_numpy(decoded).float() / 255.0
    report = {}
    for label, kw in (("exact", {}), ("perturbed", dict(noise_m=0.02, noise_deg=3.0))):
        est, _ = body.pose(motion(seed=1, **kw).params()) if kw else (verts, None)
        got, info = recover_palette(sdc, est, body.faces, camera)
        err = (got - palette).abs().amax(1)
        seen = info.pop("seen_mask")
        report[label] = {"within_4_255": float((err <= 4 / 255).float().mean()),
                         "mean_abs_error_255": float((got - palette).abs().mean() * 255),
                         "seen_within_4_255": float((err[seen] <= 4 / 255).float().mean()),
                         "seen_mean_abs_error_255": float((got - palette)[seen].abs().mean() * 255), **info}
    print("palette recovery:", json.dumps(report))
    # measured (256 px, demo body 8482 vertices, 12 frames, crf 15): exact 5.8/255 mean, 50% within 4/255;
    # perturbed 14.4/255, 25%. A wrong vertex order or camera gives far larger errors.
    assert report["exact"]["within_4_255"] > 0.35 and report["exact"]["mean_abs_error_255"] < 8.0
    assert report["perturbed"]["mean_abs_error_255"] < 20.0
    assert report["exact"]["seen"] > 0.9 * report["exact"]["vertices"]
    assert report["exact"]["unreachable"] == 0
