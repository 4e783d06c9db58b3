"""Which joint of a source rig (BVH / FBX) drives which SMPL joint: alias tables over normalised names,
with the hierarchy deciding what names cannot.

A name is normalised by dropping namespaces ('mixamorig:', 'Armature|'), known prefixes (mixamorig_,
Bip01, DEF-/ORG-/MCH-, Character1_, CC_Base_), splitting camelCase and separators into words, taking
the side from a 'Left'/'L'/'l'/'_l'/'.L' word, and joining the rest in lower case:
'mixamorig:LeftUpLeg' -> ('L', 'upleg'), 'lShldr' -> ('L', 'shldr'), 'thigh_l' -> ('L', 'thigh'),
'Bip01 L UpperArm' -> ('L', 'upperarm'), 'DEF-upper_arm.L' -> ('L', 'upperarm'), 'L_Hip' -> ('L', 'hip').

Conventions (see ``KNOWN_CONVENTIONS``): Mixamo, CMU MotionBuilder-friendly BVH, CMU 3ds Max-friendly
BVH / 3ds Max Biped, Poser / DAZ, Unreal mannequin / Blender Rigify, SMPL-named exports.

Names that mean different bones in different conventions are resolved from the hierarchy:
- 'Shoulder' is the collar when an upper-arm bone hangs below it (Mixamo, CMU MotionBuilder, Rigify),
  else the upper arm (CMU 3ds Max: LeftCollar > LeftShoulder > LeftElbow; SMPL names);
- 'Hand' is the wrist unless a wrist bone is above it (SMPL's L_Hand is past L_Wrist);
- 'Foot' is the ankle unless an ankle bone is above it (SMPL's L_Foot is the toes) or no toe is below;
- 'Hip' with a side is the hip joint unless a thigh bone hangs below it (then it is a pelvis offset bone).
The spine is taken from the hierarchy alone (the names disagree: Mixamo's Spine is SMPL's spine1, CMU
MotionBuilder's is spine2): the pelvis is the hips-named joint above both legs (else their common
ancestor), the chest is the common ancestor of both arms, and the joints between them become spine1
(first), spine3 (last) and spine2 (middle). Neck and head come from their names, else from the chain
above the chest that holds no arm."""

import re

from ..body.skeleton import FINGERS

KNOWN_CONVENTIONS = (
    "Mixamo (mixamorig:Hips, LeftUpLeg, LeftLeg, LeftFoot, LeftShoulder, LeftArm, LeftForeArm, LeftHand)",
    "CMU MotionBuilder BVH (Hips, LHipJoint, LeftUpLeg, LeftLeg, LeftFoot, LowerBack, Spine, LeftArm, ...)",
    "CMU 3ds Max BVH / Biped (LeftHip, LeftKnee, LeftAnkle, LeftCollar, LeftShoulder, LeftElbow, LeftWrist; "
    "Bip01 L Thigh, L Calf, L UpperArm, L Forearm)",
    "Poser / DAZ (hip, abdomen, chest, lCollar, lShldr, lForeArm, lHand, lThigh, lShin, lFoot)",
    "Unreal / Rigify (pelvis, spine_01, thigh_l, calf_l, foot_l, clavicle_l, upperarm_l, lowerarm_l, hand_l; "
    "DEF-thigh.L, DEF-shin.L, DEF-upper_arm.L, DEF-forearm.L)",
    "SMPL names (Pelvis, L_Hip, L_Knee, L_Ankle, L_Collar, L_Shoulder, L_Elbow, L_Wrist)",
)
LIMB_JOINTS = tuple(f"{s}_{j}" for s in ("left", "right") for j in ("hip", "knee", "ankle", "shoulder", "elbow",
                                                                    "wrist"))

_DROP_WORDS = {"mixamorig", "def", "org", "mch", "cc", "base", "jnt"}
_SIDES = {"l": "left", "left": "left", "r": "right", "right": "right"}

# sided aliases: normalised base -> SMPL joint without the side prefix, or a tuple (proximal, distal)
# of candidates decided by the hierarchy (None: a helper bone that drives nothing)
_SIDED = {
    # legs
    "upleg": "hip", "upperleg": "hip", "thigh": "hip", "thighbend": "hip", "thightwist": "hip",
    "hip": (None, "hip"), "hipjoint": None,
    "leg": "knee", "lowleg": "knee", "lowerleg": "knee", "knee": "knee", "shin": "knee", "calf": "knee",
    "shinbend": "knee",
    "foot": ("ankle", "foot"), "ankle": "ankle",
    "toebase": "foot", "toe": "foot", "toes": "foot", "toe0": "foot", "ball": "foot",
    # arms
    "collar": "collar", "clavicle": "collar", "shoulder": ("collar", "shoulder"),
    "arm": "shoulder", "uparm": "shoulder", "upperarm": "shoulder", "shldr": "shoulder", "shldrbend": "shoulder",
    "forearm": "elbow", "lowerarm": "elbow", "lowarm": "elbow", "elbow": "elbow", "forearmbend": "elbow",
    "hand": ("wrist", "hand"), "wrist": "wrist",
}
_CENTRAL = {"hips": "pelvis", "hip": "pelvis", "pelvis": "pelvis", "neck": "neck", "neck01": "neck",
            "neck1": "neck", "head": "head"}
_FINGER_WORDS = {"index": "index", "middle": "middle", "mid": "middle", "ring": "ring", "pinky": "pinky",
                 "pinkie": "pinky", "little": "pinky", "thumb": "thumb"}
_BIPED_FINGERS = ("thumb", "index", "middle", "ring", "pinky")  # Biped Finger0..Finger4
for _word, _finger in _FINGER_WORDS.items():
    for _k in (1, 2, 3):
        for _form in (f"{_word}{_k}", f"{_word}0{_k}", f"hand{_word}{_k}", f"f{_word}0{_k}", f"f{_word}{_k}"):
            _SIDED[_form] = f"{_finger}{_k}"
for _i, _finger in enumerate(_BIPED_FINGERS):
    _SIDED[f"finger{_i}"] = f"{_finger}1"
    _SIDED[f"finger{_i}1"] = f"{_finger}2"
    _SIDED[f"finger{_i}2"] = f"{_finger}3"
assert all(v is None or isinstance(v, tuple) or v in ("hip", "knee", "ankle", "foot", "collar", "shoulder", "elbow",
                                                       "wrist", "hand") or v[:-1] in FINGERS for v in _SIDED.values())

_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def normalise(name: str) -> tuple[str | None, str]:
    """(side 'left'/'right'/None, base) of a joint name (see the module notes)."""
    name = re.sub(r"^.*[:|]", "", str(name).strip())
    name = re.sub(r"^mixamorig\d*_", "", name, flags=re.IGNORECASE)
    words = [w.lower() for w in _WORDS.findall(name)]
    if words and words[0] in ("bip", "character"):  # Bip01 / Bip001 / Character1 prefixes
        words = words[2:] if len(words) > 1 and words[1].isdigit() else words[1:]
    side = None
    out = []
    for w in words:
        if w in _SIDES and side is None:
            side = _SIDES[w]
        elif w not in _DROP_WORDS:
            out.append(w)
    return side, "".join(out)


def _candidates(name: str):
    """SMPL joint candidates of one name: a tuple (proximal, distal), a single name, or None."""
    side, base = normalise(name)
    if side is None:
        return _CENTRAL.get(base)
    value = _SIDED.get(base)
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(None if v is None else f"{side}_{v}" for v in value)
    return f"{side}_{value}"


def _lineage(parents, j):
    out = []
    p = parents[j]
    while p >= 0:
        out.append(p)
        p = parents[p]
    return out


def _common_ancestor(parents, a, b):
    up = set([a] + _lineage(parents, a))
    for k in [b] + _lineage(parents, b):
        if k in up:
            return k
    return None


def assign(names, parents) -> dict[str, int]:
    """{SMPL joint name: source joint index} for a rig's joint names and parents (parents[j] < j, -1 roots)."""
    n = len(names)
    cands = [_candidates(x) for x in names]
    parents = [int(p) for p in parents]
    children = [[] for _ in range(n)]
    for j, p in enumerate(parents):
        if p >= 0:
            children[p].append(j)

    def descendants(j):
        out, stack = [], list(children[j])
        while stack:
            k = stack.pop()
            out.append(k)
            stack.extend(children[k])
        return out

    fixed = {j: c for j, c in enumerate(cands) if isinstance(c, str)}
    chosen = dict(fixed)
    for j, c in enumerate(cands):
        if not isinstance(c, tuple):
            continue
        proximal, distal = c
        below = {fixed.get(k) for k in descendants(j)}
        above = {fixed.get(k) for k in _lineage(parents, j)}
        if distal in below:
            pick = proximal
        elif proximal is not None and proximal in above:
            pick = distal
        elif distal.endswith("_foot"):  # a foot with no toe below it is the ankle
            pick = proximal
        else:
            pick = proximal if distal.endswith("_hand") else distal
        if pick:
            chosen[j] = pick
    out = {}
    for j in range(n):  # topological order: the first (most proximal) joint of a name wins
        c = chosen.get(j)
        if c and c not in out:
            out[c] = j
    _structure(out, names, parents, children)
    return out


def _structure(out: dict, names, parents, children) -> None:
    """Pelvis, spine1..3, neck and head from the hierarchy (in place)."""
    hips = [out.get("left_hip"), out.get("right_hip")]
    if None not in hips:
        base = _common_ancestor(parents, *hips)
        named = out.get("pelvis")
        if named is None or named not in [base] + _lineage(parents, base):
            named = base
        if named is not None:
            out["pelvis"] = named
    arms = [out.get("left_collar", out.get("left_shoulder")), out.get("right_collar", out.get("right_shoulder"))]
    pelvis = out.get("pelvis")
    if None in arms or pelvis is None:
        return
    chest = _common_ancestor(parents, *arms)
    while chest is not None and chest in (out.get("neck"), out.get("head")):  # Biped: clavicles on the neck
        chest = parents[chest] if parents[chest] >= 0 else None
    if chest is None:
        return
    path = [chest] + _lineage(parents, chest)
    if pelvis not in path:
        return
    chain = path[:path.index(pelvis)][::-1]  # pelvis (excluded) -> chest (included)
    for key in ("spine1", "spine2", "spine3"):
        out.pop(key, None)
    if len(chain) == 1:
        out["spine1"] = chain[0]
    elif len(chain) >= 2:
        out["spine1"], out["spine3"] = chain[0], chain[-1]
        if len(chain) >= 3:
            out["spine2"] = chain[(len(chain) - 1) // 2 if len(chain) > 3 else 1]
    if "head" in out and "neck" in out:
        return
    arm_roots = set(arms)
    for a in arms:
        arm_roots.update(_lineage(parents, a))
    up, k = [], chest
    while True:  # follow the child that leads to no arm
        nxt = [c for c in children[k] if c not in arm_roots and not normalise(names[c])[1].endswith("end")
               and normalise(names[c])[0] is None]
        if not nxt:
            break
        k = max(nxt, key=lambda c: len(children[c]) + 1)
        up.append(k)
    if not up:
        return
    if "head" not in out:
        out["head"] = up[-1]
    if "neck" not in out and len(up) >= 2 and up[0] != out["head"]:
        out["neck"] = up[0]


def refusal(source: str, names, found: dict) -> str | None:
    """The error message for a rig whose leg or arm chains do not map, else None."""
    missing = [j for j in ("pelvis",) + LIMB_JOINTS if j not in found]
    if not missing:
        return None
    shown = ", ".join(str(x) for x in names[:40]) + (" ..." if len(names) > 40 else "")
    return (f"{source or 'The animation'}: the rig's legs and arms could not be matched to SMPL's skeleton, so it "
            f"would move with frozen limbs. Unmapped SMPL joints: {', '.join(missing)}. Joint names found "
            f"({len(names)}): {shown}. Known naming conventions: " + "; ".join(KNOWN_CONVENTIONS) +
            ". Rename the rig's bones to one of these (e.g. retarget it to Mixamo's skeleton) and export again.")


def mapped_summary(found: dict, names) -> str:
    return ", ".join(f"{k}<-{names[v]}" for k, v in sorted(found.items(), key=lambda kv: kv[1]))


def indices(found: dict, target_names) -> dict[int, int]:
    """{target joint index: source joint index} for an SMPL-family target joint list."""
    target = {x: i for i, x in enumerate(target_names)}
    return {target[k]: v for k, v in found.items() if k in target}
