"""How much host memory a decomposition call holds at its peak, estimated from the clip's shape before
any model is loaded (``memory.check_host`` refuses what cannot fit).

Per pixel of every frame (bytes): the person's track (bool + float mask, 5), depth (float + its grey
IMAGE, 16), occluders (float mask + working masks, 8), the scene (float IMAGE + dilated / thresholded
masks, 14), plus one float copy of the video when it is not a float32 IMAGE already (12). Per frame:
SAM 2's tracking state (mask memory features 64x64x64 + low-res mask logits 256x256, float32, about
1.3 MB; one inference state is alive at a time). Fixed: SAM 2's prepared input block (16 frames at
1024x1024)."""

from .. import memory

TRACK_PER_PIXEL = 5
DEPTH_PER_PIXEL = 16
OCCLUDER_PER_PIXEL = 8
SCENE_PER_PIXEL = 14
SAM2_STATE_PER_FRAME = 64 * 64 * 64 * 4 + 256 * 256 * 4
SAM2_INPUT_BLOCK = 16 * 3 * 1024 * 1024 * 4


def decomposition_bytes(frames: int, height: int, width: int, *, track: bool = True, depth: bool = False,
                        occluders: bool = False, scene: bool = False, sam2: bool | None = None,
                        copy_video: bool = False) -> int:
    """Peak host bytes of one decomposition call over ``frames`` frames of ``width`` x ``height``
    (``sam2``: whether SAM 2 tracks over the clip; default: when the person or occluders are tracked)."""
    per_pixel = ((TRACK_PER_PIXEL if track else 0) + (DEPTH_PER_PIXEL if depth else 0)
                 + (OCCLUDER_PER_PIXEL if occluders else 0) + (SCENE_PER_PIXEL if scene else 0)
                 + (12 if copy_video else 0))
    sam2 = (track or occluders) if sam2 is None else sam2
    state = frames * SAM2_STATE_PER_FRAME + SAM2_INPUT_BLOCK if sam2 else 0
    return int(frames * height * width * per_pixel + state)


def decomposition_fix(frames: int, height: int, width: int) -> str:
    return (f"the clip is {frames} frames of {width}x{height}. Trim it (fewer frames), or scale it down (the "
            "official decomposition works at up to 720p) before this node, or close other programs.")


def check_decomposition(frames, what: str, **steps) -> None:
    """Refuse a decomposition call over ``frames`` [F,H,W,3] whose host-memory peak
    (``decomposition_bytes`` with these steps) does not fit what is available."""
    n, h, w = frames.shape[:3]
    memory.check_host(decomposition_bytes(n, h, w, **steps), f"{what} on {n} frames of {w}x{h}",
                      decomposition_fix(n, h, w))
