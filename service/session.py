"""One stream's session: its frames in, its action events out.

A session owns one stream's state (pose estimator and tracker or skeleton parser, the windower,
counters) and its way out (a bounded outbox the gRPC handler drains). The threads involved:

* the stream's reader thread takes requests off the wire: it checks each frame, counts it and
  either skips it (frame-rate gate), or hands it on (a frame to the stream's pose lane; a
  skeleton straight to the windower, it is cheap);
* a pose worker runs the lane: decode, pose, track, window;
* the model's batcher classifies windows and calls back with the result, which becomes an
  event in the outbox;
* the handler thread yields the outbox's responses, stamping each event's latency as it leaves.

Every frame that entered is counted as processed, skipped or dropped with a reason, or is still
pending (``frames_pending``); the final statistics have nothing pending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from service.admission import PoseCapacityFull, StreamLoad
from service.batcher import Batcher
from service.config import MAX_STREAM_ID
from service.errors import Overloaded, ServiceError, status_of
from service.frames import IncomingFrame, check_frame
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.labels import custom_labels, top_labels
from service.lanes import Lane
from service.models import Classified, LoadedModel
from service.parsing import parsed
from service.posing import FramePoser, pose_coordinate_space, start_estimator, stop_estimator
from service.runtime import Runtime
from service.scheduling import become_io_thread
from service.skeletons import SkeletonFormat, SkeletonParser
from service.windowing import FrameGate, StreamWindower, Window
from skeleton.errors import InputError
from skeleton.windows import prepare_window

log = logging.getLogger(__name__)

# MediaPipe runs its person detector on every frame while it tracks fewer people than it may
# find, which doubles the pose cost of a one-person camera asked for two; so one unless asked.
DEFAULT_MAX_PEOPLE = 1
DEFAULT_TOP_K = 3
MIN_STATS_INTERVAL_MS = 50  # periodic statistics at most 20 times a second a stream
# Frames a pose worker takes from one stream before it serves the next (see service.lanes).
FRAMES_PER_TURN = 2
# How long a failed stream's statistics wait for the frames it was posing to come back and be
# counted (a pose takes tens of milliseconds); past it they are sent with those frames pending.
FAILED_STREAM_SETTLE_S = 2.0
# The share of its model's batch queue one stream (or clip call) may hold: a skeleton client
# sending as fast as it can (one window a frame), or a long clip, would otherwise fill the queue
# that every stream of the model shares, and the others' windows would be refused. A quarter
# leaves room for three more.
STREAM_QUEUE_SHARE = 0.25
# How often a camera stream asks whether its pose worker, over capacity, ends it (service.admission):
# each asking weighs every stream's demand, under the lock the workers share.
SHED_CHECK_S = 0.5


def queue_share(batcher: Batcher) -> int:
    """How many windows one stream or clip call may have in ``batcher``'s queue at a time."""
    return max(1, int(batcher.max_queue * STREAM_QUEUE_SHARE))


@dataclass(frozen=True)
class StreamOptions:
    stream_id: str
    model: LoadedModel
    max_people: int
    top_k: int
    stride: int  # model frames between two windows of one person
    action_set: str  # "" = none
    include_embedding: bool
    include_poses: bool
    stats_interval_ms: int
    source_fps: float
    lossless: bool = False


def resolve_max_people(requested: int, limit: int) -> int:
    """A stream's or clip's people per frame: the default for 0, refused over the server's limit."""
    people = requested or min(DEFAULT_MAX_PEOPLE, limit)
    if people > limit:
        raise InputError(f"max_people {people} is over this server's limit of {limit}")
    return people


def stream_options(message: pb.StreamConfig, runtime: Runtime, posed: bool = True) -> StreamOptions:
    """A stream's configuration with defaults filled in, checked (InputError / NotFound);
    ``posed``: the server poses its frames (a skeleton stream's ``max_people`` does not apply)."""
    model = runtime.models.get(message.model)
    card = model.card
    if len(message.stream_id) > MAX_STREAM_ID:
        raise InputError(f"stream id of {len(message.stream_id)} characters is over the limit of {MAX_STREAM_ID}")
    max_people = resolve_max_people(message.max_people, runtime.config.max_people) if posed else 0
    # Not capped at the model's classes: the same number applies to enrolled actions, which may
    # be more (each list simply ends where its names do).
    top_k = message.top_k or DEFAULT_TOP_K
    stride = message.window_stride or max(1, card.window.length // 2)
    if stride > 4 * card.window.length:
        raise InputError(f"window_stride {stride} is over 4 windows ({4 * card.window.length} frames)")
    if 0 < message.stats_interval_ms < MIN_STATS_INTERVAL_MS:
        raise InputError(
            f"stats_interval_ms {message.stats_interval_ms} is under {MIN_STATS_INTERVAL_MS}"
            " (0: statistics only with events and at the end)"
        )
    if not (0 <= message.frame_rate_hint <= 1000) or not np.isfinite(message.frame_rate_hint):
        raise InputError(f"frame_rate_hint {message.frame_rate_hint} is not a frame rate")
    if message.action_set:
        runtime.actions.require(model.name, model.version, message.action_set)
    return StreamOptions(
        stream_id=message.stream_id,
        model=model,
        max_people=max_people,
        top_k=top_k,
        stride=stride,
        action_set=message.action_set,
        include_embedding=message.include_embedding,
        include_poses=message.include_poses,
        stats_interval_ms=message.stats_interval_ms,
        source_fps=float(message.frame_rate_hint),
        lossless=message.lossless,
    )


@dataclass(frozen=True)
class _Outgoing:
    response: pb.StreamResponse
    arrived: float | None = None  # an event's: when the frame that completed its window arrived


@dataclass(frozen=True)
class _Failure:
    error: BaseException


_END = object()  # the stream is over: send the final statistics
_FLUSH = object()  # in a frame lane: input has ended, hand out the last windows


class Outbox:
    """Responses waiting for the handler. Beyond ``capacity`` a droppable response is refused
    (the client reads too slowly); control items always get in."""

    def __init__(self, capacity: int) -> None:
        self._items: deque = deque()
        self._capacity = capacity
        self._ready = threading.Condition()

    def put(self, item, droppable: bool = True, share: float = 1.0) -> bool:
        """Queue ``item``; a droppable one is refused (False) when the outbox already holds
        ``share`` of its capacity."""
        with self._ready:
            if droppable and len(self._items) >= self._capacity * share:
                return False
            self._items.append(item)
            self._ready.notify()
            return True

    def get(self, timeout: float):
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            return self._items.popleft() if self._items else None


class StreamSession:
    """What frame and skeleton streams share; subclasses take their own kind of frame."""

    kind = "stream"

    def __init__(self, options: StreamOptions, runtime: Runtime, coordinate_space: str, max_people: int) -> None:
        self.options = options
        self.runtime = runtime
        self.spec = options.model.card.window
        self.coordinate_space = coordinate_space
        self.batcher = runtime.batchers[options.model.name]
        config = runtime.config
        self.windower = StreamWindower(
            self.spec, options.stride, config.max_gap_ms, config.min_presence, max_people=max_people
        )
        self.drained = False  # ended by the server's drain, not by the client
        self._metrics = runtime.metrics
        self._lock = threading.RLock()
        # Notified as a frame or a window settles: lossless readers wait here for room, and a failed
        # stream's last statistics for what it had in hand.
        self._room = threading.Condition(self._lock)
        self._outbox = Outbox(runtime.config.max_pending_events)
        self._received = self._processed = self._skipped = self._classified = self._poses_dropped = 0
        self._dropped: Counter[str] = Counter()
        self._windows_dropped: Counter[str] = Counter()
        self._latency_ms = 0.0
        self._pending_frames = 0
        self._pending_windows = 0
        self._frames_seen = 0
        self._last_timestamp: int | None = None
        self._last_arrival = time.monotonic()
        self._input_ended = self._flushed = self._finished = self._closed = False
        self._close_reason = ""  # what a frame still pending when the stream closed is dropped as
        self._queue_share = queue_share(self.batcher)
        # A lossless skeleton stream's reader waits for room in its share instead of losing windows;
        # a frame stream's windows come from a pose worker, which must not wait for one stream.
        self._waits_for_window_room = False

    # ------------------------------------------------------------------ input (reader thread)

    def read(self, requests: Iterator, call_ended: Callable[[], None]) -> None:
        """Take the stream's messages until it ends, fails, or the call goes away (then
        ``call_ended``: the server knows whether it went for a shutdown or was cancelled)."""
        become_io_thread()
        iterator = iter(requests)
        while True:
            try:
                message = next(iterator)
            except StopIteration:
                self.end_input()
                return
            except Exception:  # the call ended under us: client gone, deadline, server stopping
                call_ended()
                return
            try:
                if not self.take(message):
                    return
            except (InputError, ServiceError) as e:
                self.fail(e)
                return
            except Exception as e:
                log.exception("stream input failed", extra={"fields": {"stream_id": self.options.stream_id}})
                self.fail(e)
                return

    def take(self, message) -> bool:
        """One request after the configuration; False once input has ended (drain)."""
        arrived = time.monotonic()
        with self._lock:
            if self._input_ended or self._closed:
                return False
            kind = parsed(message, "a message of the stream").WhichOneof("kind")
            if kind != "frame":
                raise InputError(
                    "a stream is configured once, by its first message" if kind == "config" else "an empty message"
                )
            frame = message.frame
            index = self._frames_seen
            self._frames_seen += 1
            self._count_received()
            # In hand from here: pending until it is processed, skipped or dropped (``_settle``),
            # so that no snapshot of the statistics finds it in none of them.
            self._pending_frames += 1
            if self._last_timestamp is not None and frame.timestamp_ms <= self._last_timestamp:
                self._settle("dropped", "invalid")
                raise InputError(
                    f"frame {index}: timestamp {frame.timestamp_ms} ms does not follow the previous frame's"
                    f" {self._last_timestamp} ms (timestamps must increase strictly)"
                )
            self._last_timestamp = frame.timestamp_ms
        try:
            self._take_frame(frame, index, arrived)
        except InputError:
            self._settle("dropped", "invalid")
            raise
        except BaseException:
            self._settle("dropped", "stream_failed")
            raise
        return True

    def _take_frame(self, frame, index: int, arrived: float) -> None:
        """Take a counted, pending frame on (outside the counters' lock: the batcher's callbacks
        for every stream take it, and must not wait for this stream's work). It settles the frame
        (``_settle``) or leaves it pending in a queue whose end settles it, and raises only
        before settling it."""
        raise NotImplementedError

    def end_input(self) -> None:
        """No more frames (the client half-closed, or the server drains): finish the windows."""
        raise NotImplementedError

    def drain(self) -> None:
        """The server is shutting down: the stream takes no more frames and finishes its windows.
        It ends UNAVAILABLE (reconnect) only if this cut its input short: a client that had sent
        everything lost nothing, and its stream ends as it would have."""
        with self._lock:
            self.drained = not self._input_ended
        self.end_input()

    # ------------------------------------------------------------------ windows and events

    def _window_people(self, timestamp_ms: float, people: dict[int, np.ndarray]) -> list[Window]:
        forgotten = self.windower.forgotten_tracks
        windows = self.windower.add(timestamp_ms, people)
        if self.windower.forgotten_tracks and not forgotten:  # once a stream: its stats keep the count
            log.warning(
                "stream has more tracks than it keeps; the least recently seen are forgotten"
                " (do its track ids change from frame to frame?)",
                extra={"fields": {"stream_id": self.options.stream_id, "max_tracks": self.windower.max_tracks}},
            )
        return windows

    def _wait_for_room(self, full: Callable[[], bool], poll_s: float) -> None:
        """A lossless stream's reader waits while ``full()`` (read under the lock, woken when a
        frame or a window of this stream settles, else every ``poll_s``) until input ends. Until
        then the next message has not entered, and gRPC flow control holds the client back."""
        with self._lock:
            while full() and not self._input_ended:
                self._room.wait(poll_s)

    def _submit(self, windows: list[Window], arrived: float, pose_ms: float = 0.0) -> None:
        """Classify ``windows``, completed by a frame that arrived at ``arrived`` and took
        ``pose_ms`` to pose (0: no posing, as for skeletons and the windows an end flushes)."""
        for window in windows:
            with self._lock:
                behind = self._pending_windows >= self._queue_share
            if behind and not self._waits_for_window_room:
                self._count_window_dropped("stream_behind")
                continue
            if self.batcher.failed:  # the model is lost for good (health says NOT_SERVING), not busy
                self._count_window_dropped("classify_error")
                continue
            if not self.batcher.has_room:
                # Refused before it is prepared: under overload the input threads' time goes to
                # the windows that can still be classified, not to ones the queue would refuse.
                self._count_window_dropped("batch_queue_full")
                continue
            prepared = prepare_window(window.samples, self.spec, self.coordinate_space)
            with self._lock:
                self._pending_windows += 1
            future = self.batcher.submit(prepared)
            future.add_done_callback(partial(self._classified_window, window, arrived, pose_ms))

    def _classified_window(self, window: Window, arrived: float, pose_ms: float, future) -> None:
        try:
            result = future.result()
        except Overloaded:
            self._count_window_dropped("batch_queue_full")
        except Exception:
            self._count_window_dropped("classify_error")
        else:
            try:
                self._emit_event(window, result, arrived, pose_ms)
            except Exception:  # a bug turning the result into an event: counted, not lost unseen
                log.exception("event failed", extra={"fields": {"stream": self.options.stream_id}})
                self._count_window_dropped("classify_error")
        finally:
            with self._lock:
                self._pending_windows -= 1
                self._room.notify_all()
            self._maybe_finish()

    def _emit_event(self, window: Window, result: Classified, arrived: float, pose_ms: float) -> None:
        with self._lock:
            ended = self._close_reason if self._closed else ""
        if ended:  # the stream failed or went away while this window was classified: no event will go
            self._count_window_dropped(ended)
            return
        options, card = self.options, self.options.model.card
        prototypes = (
            self.runtime.actions.prototypes(options.model.name, options.model.version, options.action_set)
            if options.action_set
            else None
        )
        event = pb.ActionEvent(
            stream_id=options.stream_id,
            track_id=window.track_id,
            start_ms=round(window.start_ms),
            end_ms=round(window.end_ms),
            labels=top_labels(card.labels, result.probabilities, options.top_k),
            custom_labels=custom_labels(prototypes, result.embedding, options.top_k),
            embedding=result.embedding.tolist() if options.include_embedding else [],
            model=options.model.name,
            timing=pb.EventTiming(pose_ms=pose_ms, classify_ms=result.batch_ms),
        )
        # A window counts once: classified when its event is on its way, dropped when it is not;
        # counted as it is queued (under the lock), so statistics sent right after it include it.
        # Checked again under that lock: a stream closed since would queue the event behind its
        # end (or failure), where it is never sent.
        with self._lock:
            ended = self._close_reason if self._closed else ""
            queued = not ended and self._outbox.put(_Outgoing(pb.StreamResponse(event=event), arrived))
            if queued:
                self._classified += 1
        if not queued:
            self._count_window_dropped(ended or "client_slow")

    def _maybe_finish(self) -> None:
        with self._lock:
            if self._finished or self._closed:
                return
            if not (self._input_ended and self._flushed and self._pending_windows == 0 and self._pending_frames == 0):
                return
            self._finished = True
        self._outbox.put(_END, droppable=False)

    # ------------------------------------------------------------------ output (handler thread)

    def responses(self) -> Iterator[pb.StreamResponse]:
        """What the handler sends: events (and poses, periodic statistics) until the final
        statistics; raises the error that ended the stream, if one did."""
        interval = self.options.stats_interval_ms / 1000.0
        next_stats = time.monotonic() + interval
        while True:
            item = self._outbox.get(max(0.0, next_stats - time.monotonic()) if interval else 1.0)
            if interval and time.monotonic() >= next_stats:
                next_stats = time.monotonic() + interval
                yield pb.StreamResponse(stats=self.stats())
            if item is None:
                continue
            if item is _END:
                yield pb.StreamResponse(stats=self.stats(final=True))
                return
            if isinstance(item, _Failure):
                # The statistics first, so that the client sees what became of its frames (the
                # bad one as invalid, those in hand as stream_failed), then the error's status.
                yield pb.StreamResponse(stats=self._stats_once_settled(FAILED_STREAM_SETTLE_S))
                raise item.error
            if item.arrived is not None:
                latency_s = time.monotonic() - item.arrived
                self._metrics.event_latency.observe(latency_s)
                with self._lock:
                    self._latency_ms = latency_s * 1000.0
                item.response.event.stats.CopyFrom(self.stats())
            yield item.response

    def _stats_once_settled(self, timeout_s: float) -> pb.StreamStats:
        """The statistics of a closed stream once no frame or window is pending (final), or after
        ``timeout_s`` with what is still pending (a pose running long: not final)."""
        with self._lock:
            settled = self._room.wait_for(lambda: self._pending_frames == 0 and self._pending_windows == 0, timeout_s)
            return self.stats(final=settled)

    def stats(self, final: bool = False) -> pb.StreamStats:
        with self._lock:
            return pb.StreamStats(
                frames_received=self._received,
                frames_processed=self._processed,
                frames_skipped=self._skipped,
                frames_dropped=dict(self._dropped),
                frames_pending=self._pending_frames,
                windows_classified=self._classified,
                windows_dropped=dict(self._windows_dropped),
                latency_ms=self._latency_ms,
                active_tracks=self.windower.active_tracks,
                tracks_forgotten=self.windower.forgotten_tracks,
                poses_dropped=self._poses_dropped,
                final=final,
            )

    # ------------------------------------------------------------------ ending

    def fail(self, error: BaseException, reason: str = "stream_failed") -> bool:
        """End the stream with ``error`` (its status goes to the client, after the statistics);
        frames still pending are dropped with ``reason``. False when it had ended already."""
        with self._lock:
            if self._finished:
                return False
        if status_of(error) is None:
            error = ServiceError("internal error")
        # Released before the failure is queued: the statistics sent with it count the frames
        # that the release drops.
        if not self._shut(reason):
            return False
        self._outbox.put(_Failure(error), droppable=False)
        return True

    def close(self, reason: str = "cancelled") -> None:
        """Release everything; frames still pending are dropped with ``reason``. Idempotent."""
        if self._shut(reason):
            self._outbox.put(_END, droppable=False)

    def _shut(self, reason: str) -> bool:
        """Mark the stream closed and release it, once: False when it already was."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            self._close_reason = reason
            self._input_ended = True
        self._release(reason)
        return True

    def _release(self, reason: str) -> None:
        pass

    # ------------------------------------------------------------------ counting (metrics too)

    def _count_received(self) -> None:
        self._received += 1
        self._metrics.frames_received.labels(kind=self.kind).inc()

    def _settle(self, outcome: str, reason: str = "") -> None:
        """A pending frame's end: "processed", "skipped" (by design) or "dropped" with ``reason``,
        counted in the same step as it leaves the pending ones."""
        with self._lock:
            self._pending_frames -= 1
            if outcome == "processed":
                self._processed += 1
            elif outcome == "skipped":
                self._skipped += 1
            else:
                self._dropped[reason] += 1
            self._room.notify_all()
        if outcome == "processed":
            self._metrics.frames_processed.labels(kind=self.kind).inc()
        elif outcome == "skipped":
            self._metrics.frames_skipped.inc()
        else:
            self._metrics.frames_dropped.labels(reason=reason).inc()
        self._maybe_finish()

    def _ended_reason(self) -> str:
        """What a frame that arrives after input ended is dropped as: the stream's close reason
        once it is closed (failed, cancelled, shut down), else "stream_ended" (a drain). Under ``_lock``."""
        return self._close_reason if self._closed else "stream_ended"

    def _count_window_dropped(self, reason: str) -> None:
        with self._lock:
            self._windows_dropped[reason] += 1
        self._metrics.windows_dropped.labels(reason=reason).inc()


class FrameSession(StreamSession):
    """A camera stream: frames through the gate to the stream's pose lane."""

    kind = "frames"

    def __init__(self, options: StreamOptions, runtime: Runtime) -> None:
        spec = options.model.card.window
        super().__init__(options, runtime, pose_coordinate_space(spec), options.max_people)
        self.gate = FrameGate(spec.fps, options.source_fps)
        self.load = StreamLoad(options.stream_id, live=not options.lossless)
        self._next_shed_check = 0.0
        try:
            self.worker, estimator = start_estimator(
                runtime.pose_workers, runtime.make_estimator, options.max_people, self.load
            )
        except PoseCapacityFull as e:
            log.warning("stream refused", extra={"fields": {"stream_id": options.stream_id, "why": str(e)}})
            self._metrics.streams_refused.inc()
            raise
        self.poser = FramePoser(estimator, spec, runtime.config.pose_width, runtime.metrics)
        try:
            self.lane: Lane = Lane(
                self.worker.executor,
                self._run,
                runtime.config.max_pending_frames,
                self._lane_dropped,
                self._lane_closed,
                turn=FRAMES_PER_TURN,
            )
        except BaseException:  # the estimator and the worker's share would otherwise be held for good
            stop_estimator(self.poser, runtime.pose_workers, self.worker, self.load)
            raise

    def _lane_closed(self) -> None:
        stop_estimator(self.poser, self.runtime.pose_workers, self.worker, self.load)

    def take(self, message) -> bool:
        if self.options.lossless:  # room in the stream's pose lane
            self._wait_for_room(lambda: self._pending_frames >= self.runtime.config.max_pending_frames, 0.5)
        return super().take(message)

    def _take_frame(self, frame, index: int, arrived: float) -> None:
        incoming = check_frame(frame, index, self.runtime.limits, arrived)
        with self._lock:  # cheap from here on; under the lock, so that a drain's flush comes after it
            if self._input_ended:
                self._settle("dropped", self._ended_reason())
            elif not self.gate.admit(incoming.timestamp_ms):
                self._settle("skipped")
            elif not self.lane.put(incoming):  # in the lane it stays pending, until posed or dropped
                self._settle("dropped", self._ended_reason())
            else:
                self.load.frame_in()

    def end_input(self) -> None:
        with self._lock:
            if self._input_ended:
                return
            self._input_ended = True
        self.lane.put(_FLUSH, droppable=False)

    def _lane_dropped(self, item, reason: str) -> None:
        if item is not _FLUSH:
            self._settle("dropped", reason)

    def _run(self, item) -> None:
        """One lane item, in a pose worker."""
        try:
            if item is _FLUSH:
                self._submit(self.windower.flush(), self._last_arrival)
                with self._lock:
                    self._flushed = True
                self._maybe_finish()
                return
            self._pose(item)
        except (InputError, ServiceError) as e:
            self.fail(e)
        except Exception as e:
            log.exception("pose failed", extra={"fields": {"stream_id": self.options.stream_id}})
            self.fail(e)

    def _pose(self, frame: IncomingFrame) -> None:
        self._metrics.stage_seconds.labels(stage="queued").observe(time.monotonic() - frame.arrived)
        try:
            posed = self.poser.pose(frame)
            self.load.posed(posed.pose_ms / 1000.0)
            started = time.monotonic()
            windows = self._window_people(frame.timestamp_ms, posed.people())
            self.runtime.metrics.stage_seconds.labels(stage="window").observe(time.monotonic() - started)
        except BaseException as e:
            self._settle("dropped", "invalid" if isinstance(e, InputError) else "stream_failed")
            raise
        with self._lock:
            closed, reason = self._closed, self._close_reason
            self._last_arrival = frame.arrived
        if closed:  # the stream ended while this frame was posed: nothing will be sent for it
            for _ in windows:
                self._count_window_dropped(reason)
            self._settle("dropped", reason)
            return
        if self.options.include_poses:
            people = [
                pb.TrackedPose(track_id=t, image_xy=xy.ravel().tolist(), visibility=v.tolist())
                for t, xy, v in zip(posed.track_ids, posed.image_xy, posed.visibility)
            ]
            poses = pb.FramePoses(timestamp_ms=frame.timestamp_ms, people=people)
            # Events come first: poses may fill half the outbox, and one not sent is counted.
            if not self._outbox.put(_Outgoing(pb.StreamResponse(poses=poses)), share=0.5):
                with self._lock:
                    self._poses_dropped += 1
                self._metrics.poses_dropped.inc()
        # Its windows are submitted before the frame is settled: a failed stream's last statistics
        # wait for pending frames and windows, and must not find neither while they are in between.
        self._submit(windows, frame.arrived, posed.pose_ms)
        self._settle("processed")
        if self.load.live and time.monotonic() >= self._next_shed_check:
            self._next_shed_check = time.monotonic() + SHED_CHECK_S
            if self.runtime.pose_workers.take_shed(self.worker, self.load):
                self._shed()

    def _shed(self) -> None:
        """End this stream: its worker wants more pose time than its core has, and this is the
        newest of its live streams, measured (``service.admission``)."""
        if not self.fail(self.runtime.pose_workers.admission.shed_error(), reason="shed"):
            return  # it had ended already (the client went away meanwhile)
        fields = {"stream_id": self.options.stream_id, "worker": self.worker.index}
        log.warning(
            "stream shed: its pose worker is over capacity",
            extra={"fields": {**fields, "others_demand": self.runtime.pose_workers.demand(self.worker)}},
        )
        self._metrics.streams_shed.inc()

    def _release(self, reason: str) -> None:
        self.lane.close(reason)


class SkeletonSession(StreamSession):
    """Skeletons from the caller's device: parsed and windowed as they arrive."""

    kind = "skeletons"

    def __init__(self, options: StreamOptions, runtime: Runtime, fmt: SkeletonFormat) -> None:
        super().__init__(options, runtime, fmt.coordinate_space, runtime.config.max_skeleton_people)
        self.parser = SkeletonParser(fmt, self.spec, runtime.config.max_skeleton_people)
        self._waits_for_window_room = options.lossless
        self._input_lock = threading.Lock()  # the parser and windower: the reader's, or the drain's flush

    def take(self, message) -> bool:
        if self.options.lossless:
            # Room for this stream's windows, in its share and in the model's queue (which other
            # streams fill too, so it is polled): a frame completes at most one window a person.
            self._wait_for_room(lambda: self._pending_windows >= self._queue_share or self.batcher.is_full, 0.02)
        return super().take(message)

    def _take_frame(self, frame, index: int, arrived: float) -> None:
        with self._input_lock:
            if self._input_ended:  # a drain flushed the windows while this frame was arriving
                with self._lock:
                    reason = self._ended_reason()
                self._settle("dropped", reason)
                return
            people = self.parser.parse(frame, index)
            windows = self._window_people(frame.timestamp_ms, people)
            self._last_arrival = arrived
            self._submit(windows, arrived)
            self._settle("processed")

    def end_input(self) -> None:
        with self._input_lock:
            with self._lock:
                if self._input_ended:
                    return
                self._input_ended = True
            windows = self.windower.flush()
            self._submit(windows, self._last_arrival)
        with self._lock:
            self._flushed = True
        self._maybe_finish()
