"""Synthetic media for the tiny demo and the tests (no real person, no downloads).

- ``mimo_demo_reference.png``: a simple figure on a transparent background (RGBA);
- ``mimo_demo_motion.png``: an animated PNG of a figure waving its arms, drawn with smooth
  per-limb colours on black, the way MIMO's motion renders look;
- ``mimo_demo_walk_poses.npz``: a synthetic AMASS (SMPL+H G) file: walking while waving;
- ``mimo_demo_wave.bvh``: a Mixamo-named BVH rig (cm, legs, spine and arms) waving an arm and stepping.
- ``mimo_templates/demo/``: an official-format MIMO template (vid/sdc/bk/occ/mask.mp4 +
  config.json): a figure walking, then jumping across a textured static scene behind a pole.
- ``mimo_demo_video.mp4``: that template's raw video (``vid.mp4``) on its own, for the workflow that
  decomposes a video and estimates its motion itself.
"""

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REFERENCE_NAME = "mimo_demo_reference.png"
MOTION_NAME = "mimo_demo_motion.png"
AMASS_NAME = "mimo_demo_walk_poses.npz"
MIXAMO_NAME = "mimo_demo_wave.bvh"
TEMPLATE_NAME = "mimo_templates/demo"
VIDEO_NAME = "mimo_demo_video.mp4"


def _figure(draw: ImageDraw.ImageDraw, size: int, arm_angle: float, colours: dict, width_scale: float = 1.0):
    s = size / 64.0
    w = max(1, int(round(5 * s * width_scale)))
    cx, neck, hip = size / 2, 20 * s, 40 * s
    draw.ellipse([cx - 6 * s, 6 * s, cx + 6 * s, 18 * s], fill=colours["head"])
    draw.line([cx, neck, cx, hip], fill=colours["torso"], width=w + 2)
    for side in (-1, 1):
        a = math.radians(90 - arm_angle) if side > 0 else math.radians(90 + arm_angle)
        hand = (cx + side * 16 * s * abs(math.cos(a)) * 1.2, neck + 4 * s + 16 * s * math.sin(a) * -1 + 16 * s)
        draw.line([cx, neck + 3 * s, *hand], fill=colours["left_arm" if side < 0 else "right_arm"], width=w)
        draw.line([cx, hip, cx + side * 8 * s, 60 * s], fill=colours["left_leg" if side < 0 else "right_leg"], width=w)


MOTION_COLOURS = {"head": (250, 200, 120), "torso": (120, 200, 230), "left_arm": (230, 90, 140),
                  "right_arm": (120, 230, 100), "left_leg": (180, 120, 250), "right_leg": (250, 240, 90)}
REFERENCE_COLOURS = {"head": (230, 190, 160), "torso": (40, 70, 160), "left_arm": (230, 190, 160),
                     "right_arm": (230, 190, 160), "left_leg": (60, 60, 70), "right_leg": (60, 60, 70)}


def reference_image(size: int = 64) -> Image.Image:
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    _figure(ImageDraw.Draw(img), size, 30.0, {k: v + (255,) for k, v in REFERENCE_COLOURS.items()}, 1.6)
    return img


def motion_frames(frames: int = 8, size: int = 64) -> list[Image.Image]:
    out = []
    for i in range(frames):
        img = Image.new("RGB", (size, size), (0, 0, 0))
        _figure(ImageDraw.Draw(img), size, 60.0 * math.sin(2 * math.pi * i / frames), MOTION_COLOURS)
        out.append(img)
    return out


_MIXAMO_RIG = (  # name, parent, offset (cm): a full Mixamo body (legs, spine, arms) in T-pose
    ("Hips", None, (0, 100, 0)), ("Spine", "Hips", (0, 10, 0)), ("Spine1", "Spine", (0, 12, 0)),
    ("Spine2", "Spine1", (0, 12, 0)), ("Neck", "Spine2", (0, 15, 0)), ("Head", "Neck", (0, 10, 0)),
    ("LeftShoulder", "Spine2", (6, 10, 0)), ("LeftArm", "LeftShoulder", (12, 0, 0)),
    ("LeftForeArm", "LeftArm", (26, 0, 0)), ("LeftHand", "LeftForeArm", (25, 0, 0)),
    ("RightShoulder", "Spine2", (-6, 10, 0)), ("RightArm", "RightShoulder", (-12, 0, 0)),
    ("RightForeArm", "RightArm", (-26, 0, 0)), ("RightHand", "RightForeArm", (-25, 0, 0)),
    ("LeftUpLeg", "Hips", (9, -6, 0)), ("LeftLeg", "LeftUpLeg", (0, -42, 0)), ("LeftFoot", "LeftLeg", (0, -42, 0)),
    ("LeftToeBase", "LeftFoot", (0, -6, 12)), ("RightUpLeg", "Hips", (-9, -6, 0)),
    ("RightLeg", "RightUpLeg", (0, -42, 0)), ("RightFoot", "RightLeg", (0, -42, 0)),
    ("RightToeBase", "RightFoot", (0, -6, 12)),
)
_MIXAMO_POSES = {  # per frame: joint -> (Z, X, Y) degrees; the left arm waves, the legs step
    "LeftArm": lambda k: (60 + 30 * k, 0, 0), "LeftForeArm": lambda k: (20 * k, 0, 0),
    "RightArm": lambda k: (-70, 0, 0), "LeftUpLeg": lambda k: (0, -20 * k, 0), "LeftLeg": lambda k: (0, 25 * k, 0),
    "RightUpLeg": lambda k: (0, 10 * k, 0),
}


def _mixamo_bvh(frames: int = 4) -> str:
    lines = ["HIERARCHY"]
    order = []

    def block(name, parent, offset, depth):
        pad = "  " * depth
        order.append(name)
        lines.append(f"{pad}{'ROOT' if parent is None else 'JOINT'} mixamorig:{name}\n{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]} {offset[1]} {offset[2]}")
        lines.append(f"{pad}  CHANNELS {6 if parent is None else 3} "
                     f"{'Xposition Yposition Zposition ' if parent is None else ''}Zrotation Xrotation Yrotation")
        kids = [r for r in _MIXAMO_RIG if r[1] == name]
        for kid in kids:
            block(*kid, depth + 1)
        if not kids:
            lines.append(f"{pad}  End Site\n{pad}  {{\n{pad}    OFFSET 0 5 0\n{pad}  }}")
        lines.append(f"{pad}}}")

    block(*_MIXAMO_RIG[0], 0)
    lines += ["MOTION", f"Frames: {frames}", "Frame Time: 0.0333333"]
    for f in range(frames):
        k = math.sin(math.pi * f / max(frames - 1, 1))
        row = [5.0 * f, 100.0, 0.0]
        for name in order:
            row += list(_MIXAMO_POSES.get(name, lambda k: (0, 0, 0))(k))
        lines.append(" ".join(f"{v:g}" for v in row))
    return "\n".join(lines) + "\n"


MIXAMO_BVH = _mixamo_bvh()


def write_amass_walk(path: str | Path, frames: int = 40, fps: float = 60.0) -> Path:
    """SMPL+H G keys (poses 156, trans, 16 betas, gender, mocap_framerate, dmpls) in AMASS's Z-up world."""
    rng = np.random.default_rng(0)
    t = np.arange(frames) / fps
    poses = rng.normal(0, 0.05, (frames, 156))
    poses[:, 0:3] = [np.pi / 2, 0, 0]  # AMASS root: stands the body up in the Z-up world
    poses[:, 3 + 16 * 3 + 2] = 0.8 * np.sin(2 * np.pi * t)  # left shoulder swings
    trans = np.stack([np.zeros(frames), 0.8 * t, np.full(frames, 0.9)], 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, poses=poses, trans=trans, betas=np.zeros(16), gender=np.array("neutral"),
             mocap_framerate=np.array(fps), dmpls=np.zeros((frames, 8)))
    return path


def write_demo_assets(folder: str | Path, frames: int = 8, size: int = 64) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ref = folder / REFERENCE_NAME
    reference_image(size).save(ref)
    motion = folder / MOTION_NAME
    images = motion_frames(frames, size)
    images[0].save(motion, save_all=True, append_images=images[1:], duration=100, loop=0)
    write_demo_template(folder / TEMPLATE_NAME)  # the template workflow's input
    (folder / MIXAMO_NAME).write_text(MIXAMO_BVH)
    video = write_demo_video(folder / VIDEO_NAME)  # the video-replace workflow's input
    return {"reference": ref, "motion": motion, "amass": write_amass_walk(folder / AMASS_NAME),
            "mixamo": folder / MIXAMO_NAME, "video": video}


# ----------------------------------------------------------------------------- video template

def template_frames(frames: int = 10, width: int = 128, height: int = 96) -> dict[str, np.ndarray]:
    """Synthetic layers of a template (uint8): a textured static scene, a pole in front of it
    (the occluder, kept in the scene layer as the official decomposition does), and a figure that
    walks on the left for the first half of the clip and then on the right (so the ROI planner
    starts a second clip). ``motion`` is the figure in motion-render colours on black, ``video``
    the figure in "clothes" over the scene with the pole on top; ``occlusion`` is the pole,
    ``mask`` the figure's visible pixels."""
    yy, xx = np.mgrid[0:height, 0:width]
    scene = np.stack([60 + 80 * xx / width, 90 + 60 * yy / height, 120 + 40 * ((xx // 8 + yy // 8) % 2)], -1)
    scene = scene.astype(np.uint8)
    pole = np.zeros((height, width), bool)
    pole_x = int(width * 0.3)
    pole[:, pole_x:pole_x + max(2, width // 16)] = True
    scene[pole] = (110, 70, 40)
    size = int(height * 0.75)
    out = {k: [] for k in ("video", "motion", "scene", "occlusion", "mask")}
    for i in range(frames):
        half = i >= frames // 2
        x = int(width * (0.55 if half else 0.05)) + 2 * (i % (frames // 2 or 1))
        y = height - size - 2
        angle = 60.0 * math.sin(2 * math.pi * i / max(frames, 1))
        render = Image.new("RGB", (size, size), (0, 0, 0))
        _figure(ImageDraw.Draw(render), size, angle, MOTION_COLOURS)
        person = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        _figure(ImageDraw.Draw(person), size, angle, {k: v + (255,) for k, v in REFERENCE_COLOURS.items()}, 1.3)
        motion = np.zeros((height, width, 3), np.uint8)
        motion[y:y + size, x:x + size] = np.asarray(render)[: height - y, : width - x]
        rgba = np.zeros((height, width, 4), np.uint8)
        rgba[y:y + size, x:x + size] = np.asarray(person)[: height - y, : width - x]
        body = rgba[..., 3] > 0
        video = scene.copy()
        video[body] = rgba[..., :3][body]
        video[pole] = scene[pole]  # the pole is in front of the figure
        out["video"].append(video)
        out["motion"].append(motion)
        out["scene"].append(scene)
        out["occlusion"].append(np.where(pole, 255, 0).astype(np.uint8))
        out["mask"].append(np.where(body & ~pole, 255, 0).astype(np.uint8))
    return {k: np.stack(v) for k, v in out.items()}


def _write_mp4(path: Path, frames: np.ndarray, fps: int, crf: int) -> None:
    import av  # PyAV ships with ComfyUI

    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": str(crf)}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_demo_template(folder: str | Path, frames: int = 10, width: int = 128, height: int = 96,
                        fps: int = 30) -> Path:
    """Write ``template_frames`` as an official template folder (H.264 mp4s + config.json)."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = template_frames(frames, width, height)
    names = {"video": "vid.mp4", "motion": "sdc.mp4", "scene": "bk.mp4", "occlusion": "occ.mp4", "mask": "mask.mp4"}
    for key, name in names.items():
        _write_mp4(folder / name, layers[key], fps, 10 if key in ("occlusion", "mask") else 15)
    config = {"fps": fps, "time_crop": {"start_idx": 0, "end_idx": -(-frames * 30 // fps)}, "frame_crop": None,
              "layer_recover": None}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def write_demo_video(path: str | Path, frames: int = 10, width: int = 128, height: int = 96, fps: int = 30) -> Path:
    """The demo template's raw video (``template_frames(...)["video"]``) as an H.264 mp4, for Load Video."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_mp4(path, template_frames(frames, width, height)["video"], fps, 15)
    return path
