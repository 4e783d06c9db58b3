"""Every file parser fuzzed with hypothesis (devtools/fuzz.py: mutated real-format files, truncations,
wrong dtypes/shapes): each input loads or raises the pack's MIMOInputError with a message. A few
derandomized examples per target here (about a minute in all); `python -m devtools.fuzz` runs more."""

import os
import pickle

import pytest
import torch

pytest.importorskip("hypothesis")

from mimo_pack.devtools import fuzz  # noqa: E402
from mimo_pack.models.errors import MIMOInputError  # noqa: E402
from mimo_pack.models.generate import checkpoints as ck  # noqa: E402
from mimo_pack.models.motion import AMASSError, BVHError, FBXError  # noqa: E402


@pytest.mark.parametrize("target", [t for t in fuzz.TARGETS if t != "fbx"])
def test_parser_fuzz(target):
    result = fuzz.run(target)
    assert result["examples"] > 0 and (result["refused"] > 0 or target == "classify")


def test_fbx_fuzz():
    pytest.importorskip("ufbx")
    result = fuzz.run("fbx")
    assert result["examples"] > 0


def test_every_user_error_shares_one_base():
    from mimo_pack.models.body.files import BodyFileError
    from mimo_pack.models.composite.template import TemplateError
    from mimo_pack.models.render.palette import PaletteError

    for cls in (AMASSError, BVHError, FBXError, BodyFileError, TemplateError, PaletteError, ck.CheckpointError):
        assert issubclass(cls, MIMOInputError) and issubclass(cls, ValueError)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_checkpoint_pickle_that_runs_code_is_refused(tmp_path):
    marker = str(tmp_path / "ran")
    path = tmp_path / "pose_guider.pth"
    torch.save({"w": torch.zeros(1), "x": _Payload(marker)}, path)
    with pytest.raises(ck.CheckpointError, match="pose_guider.pth"):
        ck.read_state_dict(path)
    assert not os.path.exists(marker)
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload does run when unpickled freely
    assert os.path.exists(marker)


def test_classify_odd_state_dicts():
    assert ck.classify({"conv_in.weight": torch.zeros(3), "down_blocks.0.x": torch.zeros(1)}) == "unknown"
    assert ck.classify({}) == "unknown"


def test_damaged_files_get_messages_naming_them(tmp_path):
    import numpy as np

    from mimo_pack.models.composite.template import TemplateError, read_config
    from mimo_pack.models.motion import load_amass

    path = tmp_path / "walk_poses.npz"
    np.savez(path, poses=np.zeros((4, 156)), trans=np.zeros(1), mocap_framerate=np.array(30.0))
    with pytest.raises(AMASSError, match=r"walk_poses.npz: 'trans' has shape \(1,\)"):
        load_amass(path)
    (tmp_path / "config.json").write_text('{"fps": 30, "time_crop": [0, 10]}')
    with pytest.raises(TemplateError, match="time_crop must be an object"):
        read_config(tmp_path)
