"""Skeletons posed on the caller's device: their declared format, checked, into the model's space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.frames import check_timestamp
from skeleton.dataset import COORDINATE_SPACES
from skeleton.errors import InputError
from skeleton.layouts import get_layout
from skeleton.mapping import layout_mapping
from skeleton.pose.tracker import TRACKS_PER_PERSON, PersonTracker
from skeleton.windows import WindowSpec, to_model_space

# Far beyond any pixel or metre a skeleton is given in; larger values overflow float32 distances
# in the tracker and normalisation (the answer would be NaN), so they are refused as bad input.
MAX_COORDINATE = 1e6


@dataclass(frozen=True)
class SkeletonFormat:
    layout: str
    dims: int
    coordinate_space: str
    num_joints: int


def resolve_format(message, spec: WindowSpec) -> SkeletonFormat:
    """An ``actionrec.v1.SkeletonFormat`` with defaults filled in, checked against the model."""
    layout_name = message.layout or "mediapipe33"
    layout = get_layout(layout_name)  # InputError naming the known layouts
    dims = message.dims or spec.dims
    if dims not in (2, 3):
        raise InputError(f"skeletons must be 2-D or 3-D, not {dims}-D")
    if dims != spec.dims:
        raise InputError(f"the model takes {spec.dims}-D skeletons; these are declared {dims}-D")
    space = message.coordinate_space or ("image" if dims == 2 else "camera")
    if space not in COORDINATE_SPACES:
        raise InputError(f"unknown coordinate space {space!r}; known: {', '.join(COORDINATE_SPACES)}")
    layout_mapping(layout_name, spec.layout)  # InputError when the layout cannot feed the model
    return SkeletonFormat(layout_name, dims, space, layout.num_joints)


class SkeletonParser:
    """One stream's skeleton frames into {track id: joints in the model's layout}.

    People come with the caller's track ids, or none and the server tracks them: all of a
    stream's people carry an id or none does (the first frame with people decides), since the
    server's ids and the caller's would otherwise name different people alike. A joint with
    confidence 0 is missing; NaN or infinite coordinates and wrong lengths are refused.
    """

    def __init__(self, fmt: SkeletonFormat, spec: WindowSpec, max_people: int) -> None:
        self.format = fmt
        self.spec = spec
        self.max_people = max_people
        # A depth sensor or mocap system reports every body it tracks each frame; a pose estimator
        # on the caller's images may find one of two people a frame: the layout says which sent them.
        self.tracker = PersonTracker(
            max_tracks=TRACKS_PER_PERSON * max_people, lone_person_stays=get_layout(fmt.layout).from_sensor
        )
        self.caller_ids: bool | None = None  # whether this stream's people carry track ids; None: no one yet

    def parse(self, frame, index: int) -> dict[int, np.ndarray]:
        try:
            return self._parse(frame)
        except InputError as e:
            raise InputError(f"skeleton frame {index} (t={frame.timestamp_ms} ms): {e}") from None

    def _parse(self, frame) -> dict[int, np.ndarray]:
        check_timestamp(frame.timestamp_ms)
        people = frame.people
        if len(people) > self.max_people:
            raise InputError(f"{len(people)} people, over the limit of {self.max_people}")
        if not people:
            if not self.caller_ids:
                self.tracker.update([], [], frame.timestamp_ms)  # a frame of nobody: the next one is not "right after"
            return {}
        joints, dims = self.format.num_joints, self.format.dims
        coords = np.empty((len(people), joints, dims), dtype=np.float32)
        confidence = np.ones((len(people), joints), dtype=np.float32)
        for p, person in enumerate(people):
            if len(person.coords) != joints * dims:
                raise InputError(
                    f"person {p} has {len(person.coords)} values; {self.format.layout} in {dims}-D needs"
                    f" {joints} x {dims} = {joints * dims}"
                )
            coords[p] = np.asarray(person.coords, dtype=np.float32).reshape(joints, dims)
            if len(person.confidence):
                if len(person.confidence) != joints:
                    raise InputError(f"person {p} has {len(person.confidence)} confidences for {joints} joints")
                confidence[p] = person.confidence
        if not np.isfinite(coords).all():
            raise InputError("coordinates must be finite (mark a missing joint with confidence 0, not NaN)")
        if np.abs(coords).max() > MAX_COORDINATE:
            raise InputError(f"coordinates must be within ±{MAX_COORDINATE:g}")
        if not (np.isfinite(confidence).all() and (confidence >= 0).all() and (confidence <= 1).all()):
            raise InputError("confidences must be in [0, 1]")
        with_id = [person.HasField("track_id") for person in people]
        if any(with_id) and not all(with_id):
            raise InputError("either every person of a frame has a track_id or none has")
        if self.caller_ids is None:
            self.caller_ids = all(with_id)
        elif self.caller_ids != all(with_id):
            raise InputError(
                "people without a track_id in a stream whose people carry them"
                if self.caller_ids
                else "people with a track_id in a stream whose people the server tracks (they had none)"
            )
        if all(with_id):
            ids = [person.track_id for person in people]
            if len(set(ids)) != len(ids):
                raise InputError(f"repeated track ids {ids}")
        else:
            ids = self.tracker.update(list(coords), list(confidence), frame.timestamp_ms)
        coords[confidence <= 0] = np.nan
        mapped, _ = to_model_space(coords, None, self.format.layout, self.spec)
        return dict(zip(ids, mapped))
