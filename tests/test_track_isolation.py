"""SAM 2 runs without patching anything global: after every call (also one that raises) torch.nn.init
and every attribute of the sam2 modules are the original objects, no torch function mode is left on
the stack, and while a call runs, other code (another thread, or the caller's own callback) sees the
originals. The initialisation skip itself is checked to work, so the isolation is not vacuous."""

import sys
import threading

import pytest
import torch

pytest.importorskip("sam2")

from mimo_pack.models.decompose import sam2_build, sam2_masks, sam2_video, tiny_models, track  # noqa: E402
from mimo_pack.devtools.synthetic_clip import person_clip  # noqa: E402

H, W, N = 64, 96, 6


class Cancelled(Exception):
    pass


def snapshot() -> dict:
    """Every attribute of torch.nn.init and of each loaded sam2 module, by identity."""
    modules = {"torch.nn.init": torch.nn.init}
    modules.update({name: m for name, m in sys.modules.items() if name.split(".")[0] == "sam2" and m is not None})
    return {(name, key): id(value) for name, m in modules.items() for key, value in vars(m).items()}


def assert_untouched(before: dict) -> None:
    after = snapshot()
    changed = sorted(k for k in before if k in after and after[k] != before[k])
    assert not changed, f"patched and not restored: {changed}"
    assert_originals()


def assert_originals() -> None:
    """The names the old code patched are the packages' own objects (whatever ran before)."""
    import sam2.sam2_video_predictor as predictor_module
    import tqdm
    from sam2.utils.misc import load_video_frames

    assert predictor_module.load_video_frames is load_video_frames
    assert predictor_module.tqdm is tqdm.tqdm
    for name in ("uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "kaiming_uniform_",
                 "kaiming_normal_", "xavier_uniform_", "xavier_normal_"):
        f = getattr(torch.nn.init, name)
        assert f.__module__ == "torch.nn.init" and f.__name__ == name and f.__code__.co_filename.endswith("init.py")
    assert torch._C._len_torch_function_stack() == 0


def init_works() -> bool:
    p = torch.nn.Parameter(torch.zeros(4))
    torch.nn.init.ones_(p)
    return bool((p == 1).all())


@pytest.fixture(scope="module")
def sam2_file(tmp_path_factory):
    return tiny_models.write_tiny_sam2(tmp_path_factory.mktemp("sam2"), layouts=("pt",), image_size=64)["pt"]


@pytest.fixture(scope="module")
def video():
    return person_clip(N, H, W)


def test_tracking_leaves_torch_and_sam2_as_they_were(sam2_file, video):
    import sam2.sam2_video_predictor as predictor_module

    frames, truth = video
    assert_originals()
    track.track_human(frames, sam2_file, mask=truth[0], device="cpu")  # every sam2 module loaded
    assert_originals()
    before = snapshot()
    originals = (predictor_module.load_video_frames, predictor_module.tqdm)
    seen = []

    def progress(done, total):  # runs inside SAM 2's propagation
        seen.append((predictor_module.load_video_frames, predictor_module.tqdm) == originals and init_works())

    out = track.track_human(frames, sam2_file, mask=truth[0], device="cpu", progress=progress)
    assert out.shape == (N, H, W) and len(seen) == N and all(seen)
    track.track_objects(frames, sam2_file, {2: truth[2]}, device="cpu", progress=progress)
    assert all(seen) and len(seen) > N
    assert_untouched(before)

    def fail(done, total):
        raise Cancelled("cancelled")  # as ComfyUI's Cancel inside the progress callback

    with pytest.raises(Cancelled):
        track.track_human(frames, sam2_file, mask=truth[0], device="cpu", progress=fail)
    with pytest.raises(ValueError, match="mask is empty"):
        track.track_human(frames, sam2_file, mask=torch.zeros(H, W), device="cpu")
    assert_untouched(before)
    assert init_works()


def test_automatic_masks_leave_everything_as_it_was(sam2_file, video):
    frames, truth = video
    with sam2_masks.sam2_proposer(sam2_file, device="cpu", points_per_side=2, crop_n_layers=0):
        pass
    before = snapshot()
    with sam2_masks.sam2_proposer(sam2_file, device="cpu", points_per_side=2, crop_n_layers=0) as propose:
        propose(frames[0].numpy(), truth[0].numpy(), truth[0].numpy() > 0.5)
    with pytest.raises(RuntimeError, match="inside"):
        with sam2_masks.sam2_proposer(sam2_file, device="cpu", points_per_side=2, crop_n_layers=0):
            raise RuntimeError("inside")
    assert_untouched(before)


def test_a_failing_build_restores_everything(tmp_path):
    before = snapshot()
    config = tmp_path / "broken.yaml"  # a config whose model cannot be instantiated
    config.write_text("model:\n  _target_: sam2.sam2_video_predictor.SAM2VideoPredictor\n"
                      "  image_encoder:\n    _target_: sam2.no_such_module.Encoder\n")
    with pytest.raises(RuntimeError, match="Could not build SAM 2"):
        sam2_build.build_sam2(str(config), image_size=64, random_init=False)
    assert_untouched(before)
    assert init_works()


def test_the_init_skip_works_only_in_its_own_thread():
    inside, release = threading.Event(), threading.Event()
    found = {}

    def build():
        with sam2_build.skipped_parameter_init():
            found["inside"] = init_works()
            buffer = torch.zeros(3)
            torch.nn.init.ones_(buffer)  # not a parameter: computed as usual
            found["buffer"] = bool((buffer == 1).all())
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=build)
    thread.start()
    try:
        assert inside.wait(30)
        assert init_works()  # another thread, while the skip is active over there
    finally:
        release.set()
        thread.join(30)
    assert found == {"inside": False, "buffer": True}
    with pytest.raises(ZeroDivisionError):
        with sam2_build.skipped_parameter_init():
            1 / 0
    assert init_works() and torch._C._len_torch_function_stack() == 0


def test_a_sam2_without_the_rebound_names_is_a_clear_error():
    def other_init_state(self, video_path):  # a sam2 version that loads frames differently
        return {"images": video_path}

    with pytest.raises(RuntimeError, match="needs sam2 1.1.0"):
        sam2_video._with_names(other_init_state, load_video_frames=lambda **kw: None)
