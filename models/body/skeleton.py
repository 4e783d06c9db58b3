"""Joint trees of SMPL (24 joints), SMPL-H (52) and SMPL-X (55); SMPL's canonical frame is Y up,
facing +Z, the body's left on +X."""

SMPL_BODY = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # the 22 joints every SMPL-family model shares
SMPL_BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

FINGERS = ("index", "middle", "pinky", "ring", "thumb")
HAND = tuple(f"{f}{i}" for f in FINGERS for i in (1, 2, 3))  # 15 joints, AMASS/MANO order


def _hand(side: str, wrist: int, first: int) -> tuple[list[str], list[int]]:
    names, parents = [], []
    for f in range(len(FINGERS)):
        for i in range(3):
            names.append(f"{side}_{HAND[f * 3 + i]}")
            parents.append(wrist if i == 0 else first + f * 3 + i - 1)
    return names, parents


SMPL_JOINTS = SMPL_BODY + ("left_hand", "right_hand")
SMPL_PARENTS = SMPL_BODY_PARENTS + (20, 21)

_lh, _lhp = _hand("left", 20, 22)
_rh, _rhp = _hand("right", 21, 37)
SMPLH_JOINTS = SMPL_BODY + tuple(_lh) + tuple(_rh)
SMPLH_PARENTS = SMPL_BODY_PARENTS + tuple(_lhp) + tuple(_rhp)

_xlh, _xlhp = _hand("left", 20, 25)
_xrh, _xrhp = _hand("right", 21, 40)
SMPLX_JOINTS = SMPL_BODY + ("jaw", "left_eye_smplhf", "right_eye_smplhf") + tuple(_xlh) + tuple(_xrh)
SMPLX_PARENTS = SMPL_BODY_PARENTS + (15, 15, 15) + tuple(_xlhp) + tuple(_xrhp)

SKELETONS = {
    "smpl": (SMPL_JOINTS, SMPL_PARENTS),
    "smplh": (SMPLH_JOINTS, SMPLH_PARENTS),
    "smplx": (SMPLX_JOINTS, SMPLX_PARENTS),
}
