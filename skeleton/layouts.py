"""Joint layouts as data.

Every source and every model names its joints from one shared vocabulary (``pelvis``, ``neck``,
``left_wrist``, ...). That single decision makes everything else data-driven: body parts, hand
joints and left/right mirroring follow from the names, and a mapping between two layouts is
found by name, with a small table of rules for joints one layout has and another lacks
(``skeleton.mapping``).

``left``/``right`` always mean the *person's* left and right. Where a source labels its joints
the other way round (MSR Action3D), the layout here carries the person's sides, and the test
suite proves it on the real recordings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skeleton.errors import InputError

# Which body part each vocabulary name belongs to. Parts drive part-level masking; hips and
# shoulders belong to their limb so that masking a limb removes the whole limb.
_PART_OF: dict[str, str] = {
    **dict.fromkeys(
        (
            "pelvis",
            "left_pelvis",
            "right_pelvis",
            "spine",
            "chest",
            "upper_chest",
            "neck",
            "upper_neck",
            "head",
            "nose",
            "left_eye_inner",
            "left_eye",
            "left_eye_outer",
            "right_eye_inner",
            "right_eye",
            "right_eye_outer",
            "left_ear",
            "right_ear",
            "mouth_left",
            "mouth_right",
        ),
        "trunk",
    ),
    **{
        f"{side}_{name}": f"{side}_arm"
        for side in ("left", "right")
        for name in ("clavicle", "shoulder", "elbow", "wrist", "hand", "hand_tip", "thumb", "index", "pinky")
    },
    **{
        f"{side}_{name}": f"{side}_leg"
        for side in ("left", "right")
        for name in ("hip", "knee", "ankle", "heel", "foot", "foot_index")
    },
}
VOCABULARY: frozenset[str] = frozenset(_PART_OF)
PART_NAMES: tuple[str, ...] = ("trunk", "left_arm", "right_arm", "left_leg", "right_leg")

# Joints past the wrist. A layout without any of them (Penn, COCO) uses its wrists as "hands".
_HAND_SUFFIXES = ("hand", "hand_tip", "thumb", "index", "pinky")


def _mirror_name(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    if name.endswith("_left"):
        return name[:-5] + "_right"
    if name.endswith("_right"):
        return name[:-6] + "_left"
    return name


@dataclass(frozen=True)
class Layout:
    """A named joint order with its bones.

    ``bones`` are (child, parent) name pairs forming one tree over all joints; ``native_names``
    gives the source's own joint names where the source has names (BVH), in joint order.
    ``from_sensor``: skeletons of this layout come from a depth sensor or a mocap system, which
    reports every body it tracks in each frame, rather than from a pose estimator on images, which
    may find one of two close people in a frame and the other in the next (``PersonTracker``).
    """

    name: str
    joints: tuple[str, ...]
    bones: tuple[tuple[str, str], ...]
    description: str
    native_names: tuple[str, ...] = ()
    from_sensor: bool = False
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(self.joints)})
        unknown = [n for n in self.joints if n not in VOCABULARY]
        if unknown:
            raise ValueError(f"layout {self.name}: joints outside the vocabulary: {unknown}")
        if len(self._index) != len(self.joints):
            raise ValueError(f"layout {self.name}: repeated joint names")
        if self.native_names and len(self.native_names) != len(self.joints):
            raise ValueError(f"layout {self.name}: native_names do not match joints")
        for child, parent in self.bones:
            if child not in self._index or parent not in self._index:
                raise ValueError(f"layout {self.name}: bone {child}-{parent} names a missing joint")

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, name: str) -> int:
        return self._index[name]

    def has(self, name: str) -> bool:
        return name in self._index

    @property
    def parents(self) -> tuple[int, ...]:
        """Parent index of every joint (-1 for the root), from ``bones``."""
        parent_of = {child: parent for child, parent in self.bones}
        return tuple(self._index[parent_of[n]] if n in parent_of else -1 for n in self.joints)

    @property
    def parts(self) -> dict[str, tuple[int, ...]]:
        """Joint indices of each body part (trunk, each arm, each leg)."""
        return {part: tuple(i for i, n in enumerate(self.joints) if _PART_OF[n] == part) for part in PART_NAMES}

    @property
    def hand_joints(self) -> tuple[int, ...]:
        """Joints of both hands: those past the wrist, or the wrists where there are none."""
        hands: list[int] = []
        for side in ("left", "right"):
            past_wrist = [self._index[f"{side}_{s}"] for s in _HAND_SUFFIXES if f"{side}_{s}" in self._index]
            if past_wrist:
                hands += past_wrist
            elif f"{side}_wrist" in self._index:
                hands.append(self._index[f"{side}_wrist"])
        return tuple(sorted(hands))

    @property
    def mirror_permutation(self) -> tuple[int, ...]:
        """Index permutation that swaps every left joint with its right twin."""
        return tuple(self._index.get(_mirror_name(n), i) for i, n in enumerate(self.joints))


def _chain(*names: str) -> list[tuple[str, str]]:
    """Bones along a chain, each joint the child of the one before it."""
    return [(child, parent) for parent, child in zip(names, names[1:])]


def _sides(pattern: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Both sides of bones written with ``{s}`` for the side."""
    return [(c.format(s=s), p.format(s=s)) for s in ("left", "right") for c, p in pattern]


_KINECT_LIMBS = _sides(
    _chain("neck", "{s}_shoulder", "{s}_elbow", "{s}_wrist", "{s}_hand")
    + _chain("pelvis", "{s}_hip", "{s}_knee", "{s}_ankle", "{s}_foot")
)

KINECT20 = Layout(
    name="kinect20",
    description="Kinect v1 20 joints in Kinect SDK order (NW-UCLA)",
    from_sensor=True,
    joints=(
        "pelvis",
        "spine",
        "neck",
        "head",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "left_hand",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "right_hand",
        "left_hip",
        "left_knee",
        "left_ankle",
        "left_foot",
        "right_hip",
        "right_knee",
        "right_ankle",
        "right_foot",
    ),
    bones=tuple(_chain("pelvis", "spine", "neck", "head") + _KINECT_LIMBS),
)

# MSR Action3D's file order. Public loaders call joints 0/7/9/11 the *right* arm, but the
# recordings show them as the person's left (the subjects were asked to use their right arm,
# and 1/8/10/12 are the joints that move): the data is mirrored, and the names below are the
# person's sides. tests/test_layouts_real_data.py keeps the evidence.
MSR20 = Layout(
    name="msr20",
    description="MSR Action3D 20 joints in file order, sides as the person's",
    from_sensor=True,
    joints=(
        "left_shoulder",
        "right_shoulder",
        "neck",
        "spine",
        "left_hip",
        "right_hip",
        "pelvis",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hand",
        "right_hand",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
        "left_foot",
        "right_foot",
        "head",
    ),
    bones=tuple(_chain("pelvis", "spine", "neck", "head") + _KINECT_LIMBS),
)

NTU25 = Layout(
    name="ntu25",
    description="Kinect v2 25 joints in NTU RGB+D order",
    from_sensor=True,
    joints=(
        "pelvis",
        "spine",
        "upper_neck",
        "head",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "left_hand",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "right_hand",
        "left_hip",
        "left_knee",
        "left_ankle",
        "left_foot",
        "right_hip",
        "right_knee",
        "right_ankle",
        "right_foot",
        "neck",
        "left_hand_tip",
        "left_thumb",
        "right_hand_tip",
        "right_thumb",
    ),
    bones=tuple(
        _chain("pelvis", "spine", "neck", "upper_neck", "head")
        + _KINECT_LIMBS
        + _sides([("{s}_hand_tip", "{s}_hand"), ("{s}_thumb", "{s}_hand")])
    ),
)

MEDIAPIPE33 = Layout(
    name="mediapipe33",
    description="MediaPipe Pose (BlazePose GHUM) 33 landmarks",
    joints=(
        "nose",
        "left_eye_inner",
        "left_eye",
        "left_eye_outer",
        "right_eye_inner",
        "right_eye",
        "right_eye_outer",
        "left_ear",
        "right_ear",
        "mouth_left",
        "mouth_right",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_pinky",
        "right_pinky",
        "left_index",
        "right_index",
        "left_thumb",
        "right_thumb",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
        "left_heel",
        "right_heel",
        "left_foot_index",
        "right_foot_index",
    ),
    bones=tuple(
        [("mouth_left", "nose"), ("mouth_right", "nose")]
        + _sides(
            _chain("nose", "{s}_eye_inner", "{s}_eye", "{s}_eye_outer", "{s}_ear")
            + _chain("nose", "{s}_shoulder", "{s}_elbow", "{s}_wrist", "{s}_index")
            + [("{s}_pinky", "{s}_wrist"), ("{s}_thumb", "{s}_wrist")]
            + _chain("{s}_shoulder", "{s}_hip", "{s}_knee", "{s}_ankle", "{s}_heel")
            + [("{s}_foot_index", "{s}_ankle")]
        )
    ),
)

# Penn Action's file order. Its documentation lists each pair "left, right", but the
# annotations are the other way round: in front views the first joint of each pair lies on the
# image left, where a person facing the camera has their right side, and guitar strumming
# (right hand) moves the first wrist, not the second. The names below are the person's sides;
# tests/test_layouts_real_data.py keeps the evidence.
PENN13 = Layout(
    name="penn13",
    description="Penn Action 13 joints (2-D annotations of video), sides as the person's",
    joints=(
        "head",
        "right_shoulder",
        "left_shoulder",
        "right_elbow",
        "left_elbow",
        "right_wrist",
        "left_wrist",
        "right_hip",
        "left_hip",
        "right_knee",
        "left_knee",
        "right_ankle",
        "left_ankle",
    ),
    bones=tuple(
        _sides(_chain("head", "{s}_shoulder", "{s}_elbow", "{s}_wrist"))
        + _sides(_chain("{s}_shoulder", "{s}_hip", "{s}_knee", "{s}_ankle"))
    ),
)

COCO17 = Layout(
    name="coco17",
    description="COCO keypoints, 17 joints",
    joints=(
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    bones=tuple(
        _sides(
            _chain("nose", "{s}_eye", "{s}_ear")
            + _chain("nose", "{s}_shoulder", "{s}_elbow", "{s}_wrist")
            + _chain("{s}_shoulder", "{s}_hip", "{s}_knee", "{s}_ankle")
        )
    ),
)

BANDAI21 = Layout(
    name="bandai21",
    description="Bandai-Namco Research motion dataset skeleton (BVH pivots), 21 joints",
    from_sensor=True,
    joints=(
        "pelvis",
        "spine",
        "chest",
        "neck",
        "head",
        "left_clavicle",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_clavicle",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "left_hip",
        "left_knee",
        "left_ankle",
        "left_foot",
        "right_hip",
        "right_knee",
        "right_ankle",
        "right_foot",
    ),
    native_names=(
        "Hips",
        "Spine",
        "Chest",
        "Neck",
        "Head",
        "Shoulder_L",
        "UpperArm_L",
        "LowerArm_L",
        "Hand_L",
        "Shoulder_R",
        "UpperArm_R",
        "LowerArm_R",
        "Hand_R",
        "UpperLeg_L",
        "LowerLeg_L",
        "Foot_L",
        "Toes_L",
        "UpperLeg_R",
        "LowerLeg_R",
        "Foot_R",
        "Toes_R",
    ),
    bones=tuple(
        _chain("pelvis", "spine", "chest", "neck", "head")
        + _sides(_chain("chest", "{s}_clavicle", "{s}_shoulder", "{s}_elbow", "{s}_wrist"))
        + _sides(_chain("pelvis", "{s}_hip", "{s}_knee", "{s}_ankle", "{s}_foot"))
    ),
)

CMU31 = Layout(
    name="cmu31",
    description="CMU motion capture skeleton (BVH pivots), 31 joints",
    from_sensor=True,
    joints=(
        "pelvis",
        "left_pelvis",
        "left_hip",
        "left_knee",
        "left_ankle",
        "left_foot",
        "right_pelvis",
        "right_hip",
        "right_knee",
        "right_ankle",
        "right_foot",
        "spine",
        "chest",
        "upper_chest",
        "neck",
        "upper_neck",
        "head",
        "left_clavicle",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "left_hand",
        "left_hand_tip",
        "left_thumb",
        "right_clavicle",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "right_hand",
        "right_hand_tip",
        "right_thumb",
    ),
    native_names=(
        "Hips",
        "LHipJoint",
        "LeftHip",
        "LeftKnee",
        "LeftAnkle",
        "LeftToe",
        "RHipJoint",
        "RightHip",
        "RightKnee",
        "RightAnkle",
        "RightToe",
        "lowerback",
        "Chest",
        "Chest2",
        "lowerneck",
        "Neck",
        "Head",
        "LeftCollar",
        "LeftShoulder",
        "LeftElbow",
        "LeftWrist",
        "lhand",
        "LFingers",
        "LThumb",
        "RightCollar",
        "RightShoulder",
        "RightElbow",
        "RightWrist",
        "rhand",
        "RFingers",
        "RThumb",
    ),
    bones=tuple(
        _chain("pelvis", "spine", "chest", "upper_chest", "neck", "upper_neck", "head")
        + _sides(_chain("pelvis", "{s}_pelvis", "{s}_hip", "{s}_knee", "{s}_ankle", "{s}_foot"))
        + _sides(
            _chain("upper_chest", "{s}_clavicle", "{s}_shoulder", "{s}_elbow", "{s}_wrist", "{s}_hand")
            + [("{s}_hand_tip", "{s}_hand"), ("{s}_thumb", "{s}_hand")]
        )
    ),
)

LAYOUTS: dict[str, Layout] = {
    layout.name: layout for layout in (KINECT20, MSR20, NTU25, MEDIAPIPE33, PENN13, COCO17, BANDAI21, CMU31)
}


def get_layout(name: str) -> Layout:
    """The layout called ``name``; an InputError listing the known ones otherwise."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise InputError(f"unknown joint layout {name!r}; known: {', '.join(sorted(LAYOUTS))}") from None
