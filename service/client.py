"""``actionrec client``: stream a video file, camera or RTSP source to the service, print events.

A file is sent at its own frame rate (as a camera would), or as fast as the server takes it
with ``--fast`` (then losslessly: the server slows the sender instead of dropping). Frames go
as JPEG with their capture timestamps; events come back as they happen.

Only the frames the model uses are encoded and sent: the client asks the server for the
model's frame rate and runs the server's own frame-rate gate, so a 30 fps camera feeding a
15 fps model costs half the JPEG encoding and half the bandwidth, and the server's answers are
the same (``--all-frames`` sends every frame; the server then skips the same ones). Frames
much wider than the server poses them are shrunk before sending (``service.outgoing``). The
annotated video (``--out``) has every frame of a file, at the source's size; a camera's plays in
real time (``service.draw.MAX_HOLD_S``).
"""

from __future__ import annotations

import contextlib
import json
import queue
import random
import signal
import sys
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit
from urllib.request import url2pathname

import cv2
import grpc
import numpy as np

from service.channels import CALL_TIMEOUT_S, CallFailed, call_metadata, make_channel
from service.config import MAX_STREAM_ID
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from service.outgoing import check_people, encode_to_send, width_to_send
from service.printed import event_json, event_line, stats_json, stats_line
from service.windowing import FrameGate
from skeleton.errors import InputError
from skeleton.pose.video import cut_short, probe_video, quiet_ffmpeg_log, read_frames, resize_to_width


@dataclass(frozen=True)
class ClientOptions:
    source: str
    server: str
    json: bool = False
    out: Path | None = None
    fast: bool = False
    model: str = ""
    max_people: int = 0
    top_k: int = 0
    stride: int = 0
    action_set: str = ""
    stream_id: str = ""
    token: str | None = None
    tls_ca: Path | None = None
    lb_policy: str = ""  # e.g. round_robin, for a target with several addresses
    width: int | None = None  # frames sent (and --out's) this wide (None: service.outgoing.width_to_send)
    max_frames: int = 0  # 0: the whole source
    all_frames: bool = False  # send the frames beyond the model's frame rate too
    reconnect: bool = False  # a live source: a stream the server ends (restart, drain, full) is followed by another


# How long a stream that ends early waits for gRPC's sending thread to finish reading the frame
# it is on (a camera or RTSP read, a JPEG encode): ending the process while that thread is inside
# OpenCV aborts it ("terminate called without an active exception").
SENDER_STOP_S = 5.0
# How long a file's sender waits for poses before writing the frames held past the bound, once
# for each time the poses stop coming (a stream's end stops the wait: SENDER_STOP_S is not reached).
ANNOTATOR_PATIENCE_S = 2.0
# --reconnect: the codes of a server that went away or is full for now (a restart, a drain, a
# rolling update, more streams than it takes, pose workers with no room for another camera or
# one that shed this stream), and the waits between tries, doubling while it
# stays away; any other refusal would be refused again.
# DEADLINE_EXCEEDED: the model query's deadline, which a frozen server or a network that drops
# packets silently runs out, or a server that did not get the stream's configuration in time.
RECONNECT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
)
RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 30.0
# A stream that stayed open this long was taken by the server (a refusal comes at once): the
# waits start over. Each wait is drawn within +-RECONNECT_JITTER of its step, so that cameras cut
# off together do not all come back in the same instant.
RECONNECT_STEADY_S = 10.0
RECONNECT_JITTER = 0.2
# Ctrl-C or SIGTERM closes the stream as a source's end does, and waits this long for the events
# of the frames already sent and the server's final statistics (a second one stops at once):
# well within `docker stop`'s 10 s, which leaves the rest for finishing --out's video.
CLOSING_WAIT_S = 5.0
# The exit status of a client whose camera or network stream gave no more frames: a failure for
# a supervisor (systemd's Restart=on-failure), not a finished run.
SOURCE_ENDED_STATUS = 1


@dataclass
class Source:
    frames: Generator[tuple[np.ndarray, int], None, None]  # BGR frames with capture timestamps (ms)
    fps: float
    live: bool  # a camera or network stream: paced by the device, not by us
    declared_frames: int = 0  # the frames a file's container says it holds (0: a live source)

    def cut_short(self, read: int) -> str:
        """A warning when a file ran out well before the frames it declares, else ""."""
        return "" if self.live else cut_short(read, self.declared_frames)


class RequestFeed:
    """The stream's requests, pulled by gRPC's own thread. ``halt`` stops the feed and waits until
    that thread is out of it, so that the source can then be released (and the process end) safely."""

    def __init__(self, requests: Iterator[pb.StreamFramesRequest], stop: threading.Event) -> None:
        self.stop = stop  # the requests' generator checks it between frames
        self._requests = requests
        self._inside = False
        self._changed = threading.Condition()

    def __iter__(self) -> RequestFeed:
        return self

    def __next__(self) -> pb.StreamFramesRequest:
        with self._changed:
            if self.stop.is_set():
                raise StopIteration
            self._inside = True
        try:
            return next(self._requests)
        finally:
            with self._changed:
                self._inside = False
                self._changed.notify_all()

    def halt(self, timeout_s: float) -> bool:
        """Stop the feed; whether no thread is inside it any more (False: still one after ``timeout_s``)."""
        with self._changed:
            self.stop.set()
            return self._changed.wait_for(lambda: not self._inside, timeout_s)


def answers_of(call) -> queue.Queue:
    """A stream call's responses, read in a thread of their own into a queue, then its end: None,
    or the error that ended it (the call's RpcError). The main thread waits on the queue, where
    Ctrl-C interrupts it cleanly; interrupted inside gRPC's own wait, the call could not be read
    any further."""
    answers: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            for response in call:
                answers.put(response)
            answers.put(None)
        except Exception as e:  # noqa: BLE001 - raised in the main thread, which waits for it
            answers.put(e)

    threading.Thread(target=read, name="stream-responses", daemon=True).start()
    return answers


def file_url_path(url: str) -> Path:
    """The local file a ``file://`` URL names (percent-escapes decoded); InputError for another host's."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InputError(f"{url}: a file on another host ({parts.netloc}); give a local path or a network stream")
    return Path(url2pathname(parts.path))


def open_source(source: str) -> Source:
    """A camera index, an rtsp:// (or any URL) stream, or a video or image file (a file:// URL too)."""
    if source.startswith("file://"):  # a file, paced and timed as one: not a camera
        return open_source(str(file_url_path(source)))
    if source.isdigit() or "://" in source:
        capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
        if not capture.isOpened():
            raise InputError(f"{source}: cannot open the camera or stream")
        fps = capture.get(cv2.CAP_PROP_FPS)

        def live() -> Iterator[tuple[np.ndarray, int]]:
            started = time.monotonic()
            last = -1
            try:
                while True:
                    ok, bgr = capture.read()
                    if not ok:
                        return
                    timestamp = max(last + 1, round((time.monotonic() - started) * 1000))
                    last = timestamp
                    yield bgr, timestamp
            finally:
                capture.release()

        return Source(live(), fps if 0 < fps < 1000 else 30.0, live=True)
    path = Path(source)
    info = probe_video(path)
    frames = ((cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), ts) for rgb, ts in read_frames(path))
    return Source(frames, info.fps, live=False, declared_frames=info.frame_count)


def ask_model(
    api: pb_grpc.ActionRecognitionStub, options: ClientOptions, config: pb.StreamConfig
) -> pb.ModelInfo | None:
    """What the server says of the stream's model (None: a server without ``GetModelInfo``). It
    is asked before any frame is read, so that a server that does not answer is noticed first, and
    the stream is pinned to the model asked about, so that behind a load balancer it gets the same."""
    try:
        info = api.GetModelInfo(
            pb.GetModelInfoRequest(model=options.model), metadata=call_metadata(options.token), timeout=CALL_TIMEOUT_S
        )
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        raise
    check_people(options.max_people, info.max_people)
    config.model = info.name
    return info


def model_frame_gate(info: pb.ModelInfo | None, options: ClientOptions, frame_rate_hint: float) -> FrameGate | None:
    """The server's gate for the stream's model: the frames it would admit. None (send every
    frame) with ``--all-frames``, or when the server does not say the model's frame rate."""
    if info is None or options.all_frames or info.frame_rate <= 0:
        return None
    return FrameGate(info.frame_rate, frame_rate_hint)


def default_stream_id(source: str) -> str:
    """The stream's name when none is given: the file's name, ``camera-N``, or a URL's host and
    path. Never a URL's user name, password or query (the server logs the id and echoes it in
    every event), and within the server's limit on its length."""
    if source.isdigit():
        name = f"camera-{source}"
    elif source.startswith("file://"):
        name = file_url_path(source).name
    elif "://" in source:
        parts = urlsplit(source)
        host = parts.hostname or ""
        name = f"{host}:{parts.port}{parts.path}" if parts.port else f"{host}{parts.path}"
    else:
        name = Path(source).name
    return name[:MAX_STREAM_ID]


class ClientRun:
    """One ``actionrec client`` run: a source streamed to the server, in one stream, or in one
    stream after another with ``--reconnect`` (a camera kept open while the server restarts)."""

    def __init__(self, options: ClientOptions, source: Source, out: TextIO, err: TextIO) -> None:
        self.options, self.source, self.out, self.err = options, source, out, err
        self.annotator = None
        if options.out is not None:
            from service.draw import Annotator

            # A file's sender may wait for the server's poses (nothing is lost); a camera's may not.
            self.annotator = Annotator(options.out, source.fps, patience_s=ANNOTATOR_PATIENCE_S, live=source.live)
        self.config = pb.StreamConfig(
            stream_id=options.stream_id or default_stream_id(options.source),
            model=options.model,
            frame_rate_hint=source.fps,
            max_people=options.max_people,
            top_k=options.top_k,
            window_stride=options.stride,
            action_set=options.action_set,
            include_poses=self.annotator is not None,
            lossless=options.fast and not source.live,
        )
        # What failed in gRPC's sending thread (reading the source, encoding, drawing): raised here.
        self.sender_failed: Exception | None = None
        # Poses come in pixels of the frame as sent; the annotator draws on the frame as read (x, y ratios).
        self.drawn_per_sent = np.ones(2, dtype=np.float32)
        self.frames_taken = 0  # read from the source, over every stream
        self.not_sent = 0  # frames the model's frame rate leaves out
        self.not_sent_before = 0  # of them, those left out before the current stream
        self.frames_sent = 0  # handed to gRPC in the current stream (told when its final statistics never come)
        self.events = 0  # in the current stream
        self.frames_read: int | None = None  # set when the whole source was read
        self.started: float | None = None  # when the first frame was taken: a file's frames are paced from it
        self.held: tuple[np.ndarray, int] | None = None  # read as a stream ended: the next stream's first
        self.feed: RequestFeed | None = None
        self.call = None
        self.final: pb.StreamStats | None = None  # the current stream's final statistics, once they came
        self.opened: float | None = None  # when the current stream's server answered the model query

    def requests(self, gate: FrameGate | None, pose_width: int, stop: threading.Event) -> Iterator:
        """The stream's configuration, then the source's frames (those the model uses) as JPEG.
        They are made in gRPC's sending thread, which would end the call as UNKNOWN "Exception
        iterating requests!" for anything raised there, the cause unsaid: a failure ends the
        requests instead (the stream then ends as usual) and ``raise_sender_failure`` raises it."""
        yield pb.StreamFramesRequest(config=self.config)
        try:
            yield from self.frame_requests(gate, pose_width, stop)
        except Exception as e:  # noqa: BLE001 - raised in the main thread, in its own words
            self.sender_failed = e

    def frame_requests(self, gate: FrameGate | None, pose_width: int, stop: threading.Event) -> Iterator:
        options, source = self.options, self.source
        for bgr, timestamp in self.frames(stop):
            if self.started is None:
                self.started = time.monotonic() - timestamp / 1000.0
            if not (source.live or options.fast):
                delay = self.started + timestamp / 1000.0 - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    self.held = bgr, timestamp
                    return
            admitted = gate is None or gate.admit(timestamp)
            drawn = None if self.annotator is None else resize_to_width(bgr, options.width or 0)
            if drawn is not None:  # every frame is drawn, sent or not
                self.annotator.add_frame(timestamp, drawn)
            if not admitted:
                self.not_sent += 1
                continue
            width = width_to_send(bgr.shape[1], pose_width, options.width)
            jpeg, size = encode_to_send(bgr, width, f"{options.source}: frame {self.frames_taken - 1}")
            if drawn is not None:
                ratios = [drawn.shape[1] / size[0], drawn.shape[0] / size[1]]
                self.drawn_per_sent = np.array(ratios, dtype=np.float32)
            self.frames_sent += 1  # handed to gRPC
            yield pb.StreamFramesRequest(frame=pb.Frame(timestamp_ms=timestamp, encoded=jpeg))

    @property
    def source_done(self) -> bool:
        """Whether the source has nothing more to send: it ran out, or ``--max-frames`` were read."""
        max_frames = self.options.max_frames
        return self.frames_read is not None or bool(max_frames and self.frames_taken >= max_frames and not self.held)

    def frames(self, stop: threading.Event) -> Iterator[tuple[np.ndarray, int]]:
        """The source's frames until ``stop``, ``--max-frames`` or the source's end (then
        ``frames_read`` is set); a frame held back as the last stream ended comes first."""
        max_frames = self.options.max_frames
        while not stop.is_set():
            if self.held is not None:
                frame, self.held = self.held, None
            elif max_frames and self.frames_taken >= max_frames:
                return
            elif (frame := next(self.source.frames, None)) is None:
                self.frames_read = self.frames_taken  # the source ran out, not the stream
                return
            else:
                self.frames_taken += 1
            if stop.is_set():
                self.held = frame
                return
            yield frame

    def stream(self, api: pb_grpc.ActionRecognitionStub) -> pb.StreamStats | None:
        """One stream, from asking for the model to the server's last message: its final statistics
        (None when they never came); a failed call raises its RpcError once it is reported."""
        self.raise_sender_failure()  # in the last stream's sender, after that stream was over
        self.frames_sent = self.events = 0
        self.not_sent_before = self.not_sent
        self.final = None
        try:
            info = ask_model(api, self.options, self.config)
            self.opened = time.monotonic()
            gate = model_frame_gate(info, self.options, self.config.frame_rate_hint)
            stop = threading.Event()
            self.feed = RequestFeed(self.requests(gate, info.pose_width if info is not None else 0, stop), stop)
            self.call = api.StreamFrames(self.feed, metadata=call_metadata(self.options.token))
            answers = answers_of(self.call)
            try:
                self.take_answers(answers)
            except KeyboardInterrupt:
                self.close_on_interrupt(answers)
                raise
            self.raise_sender_failure()
        finally:
            self.report_stream(self.final)
        return self.final

    def take_answers(self, answers: queue.Queue, deadline: float | None = None) -> bool:
        """The call's responses taken until its end (whose error is raised here); False when
        ``deadline`` (``time.monotonic()``) came first."""
        while True:
            try:
                answer = answers.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            if answer is None:
                return True
            if isinstance(answer, Exception):
                raise answer
            if answer.WhichOneof("kind") == "stats" and answer.stats.final:
                self.final = answer.stats
            self.take(answer)

    def close_on_interrupt(self, answers: queue.Queue) -> None:
        """Ctrl-C or SIGTERM while streaming: no more frames are sent, and the stream closes as at
        a source's end, so that the events of the frames sent and the server's final statistics
        still come, for up to CLOSING_WAIT_S (then, or at a second Ctrl-C, the call is cancelled)."""
        self.tell(f"interrupted: closing the stream (up to {CLOSING_WAIT_S:g} s; Ctrl-C again to stop at once)")
        self.feed.stop.set()  # the requests end at their next frame: the stream is half-closed
        if self.annotator is not None:
            self.annotator.stop_waiting()
        try:
            if not self.take_answers(answers, time.monotonic() + CLOSING_WAIT_S):
                self.call.cancel()
        except grpc.RpcError:  # the server's own end of the stream: told by its statistics, if any
            pass

    def raise_sender_failure(self) -> None:
        """Raise, once, what failed in the sending thread."""
        failure, self.sender_failed = self.sender_failed, None
        if failure is not None:
            raise failure

    def take(self, response: pb.StreamResponse) -> None:
        """An event printed, poses and labels handed to the annotator (which has the frames sent before them)."""
        annotator = self.annotator
        kind = response.WhichOneof("kind")
        if kind == "event":
            self.events += 1
            event = response.event
            print(json.dumps(event_json(event)) if self.options.json else event_line(event), file=self.out, flush=True)
            if annotator is not None and event.labels:
                annotator.set_label(event.track_id, f"{event.labels[0].label} {event.labels[0].score:.2f}")
        elif kind == "poses" and annotator is not None:
            people = [
                (
                    p.track_id,
                    np.asarray(p.image_xy, dtype=np.float32).reshape(-1, 2) * self.drawn_per_sent,
                    np.asarray(p.visibility),
                )
                for p in response.poses.people
            ]
            annotator.add_poses(response.poses.timestamp_ms, people)

    def tell(self, message: str) -> None:
        print(message, file=self.err, flush=True)

    def report_stream(self, final: pb.StreamStats | None) -> None:
        if self.options.json and (final is not None or self.frames_sent):
            not_sent = self.not_sent - self.not_sent_before
            counts = stats_json(self.config.stream_id, final, self.frames_sent, not_sent)
            print(json.dumps(counts), file=self.out, flush=True)
        if final is not None:
            self.tell(stats_line(final))
            if (unread := self.frames_sent - final.frames_received) > 0:
                # A drain or a failure stops the server reading while frames are on their way.
                self.tell(f"{unread} frames sent after the server stopped taking this stream's frames: not posed")
            windowed = final.windows_classified or final.windows_dropped
            if not self.events and final.frames_processed and not windowed:
                posed = f"{final.frames_processed} frame" + ("" if final.frames_processed == 1 else "s")
                self.tell(f"no events: nobody was seen for half a window ({posed} posed)")
        elif self.frames_sent:
            self.tell(f"{self.frames_sent} frames sent; the stream ended before the server's final statistics")

    def report_source(self) -> None:
        if self.held is not None:
            self.tell("1 frame read as the last stream ended was not sent")
        if self.sender_failed is not None:  # raised as its stream ended for another reason: told, not lost
            self.tell(str(self.sender_failed))
        if self.not_sent:
            self.tell(f"{self.not_sent} frames not sent: beyond the model's frame rate (--all-frames sends them)")
        if self.frames_read is not None and (warning := self.source.cut_short(self.frames_read)):
            self.tell(f"{self.options.source}: {warning}")
        if self.frames_read is not None and self.source.live:
            self.tell(f"{self.options.source}: the camera or stream gave no more frames")

    def end_stream(self) -> bool:
        """Cancel the current call (nothing once it has ended) and get gRPC's thread out of the
        source; whether it is out (ending the process while that thread is inside OpenCV aborts it)."""
        if self.call is not None:
            self.call.cancel()
        if self.annotator is not None:
            self.annotator.stop_waiting()  # no poses will come: the sender must not wait for them
        return self.feed is None or self.feed.halt(SENDER_STOP_S)

    def run(self) -> int:
        options = self.options
        wait_s = RECONNECT_FIRST_S
        channel = None
        try:
            while True:
                # A channel a try: one kept through an outage backs off on its own (up to 2 min)
                # and would fail new calls at once for a while after the server is back.
                channel = make_channel(options.server, options.tls_ca, options.lb_policy)
                self.opened = None
                try:
                    self.stream(pb_grpc.ActionRecognitionStub(channel))
                    return SOURCE_ENDED_STATUS if self.source.live and self.frames_read is not None else 0
                except grpc.RpcError as e:
                    code, details = e.code(), e.details()
                    if not (options.reconnect and code in RECONNECT_CODES and not self.source_done):
                        if code == grpc.StatusCode.DEADLINE_EXCEEDED and self.opened is None:  # the model query's
                            details = f"no answer within {CALL_TIMEOUT_S:g} s"
                        raise CallFailed(options.server, code.name, details) from None
                if not self.end_stream():  # a new stream would wait on the same stuck read
                    stuck = f"not reconnecting: reading {options.source} has not returned in {SENDER_STOP_S:g} s"
                    raise CallFailed(options.server, code.name, f"{details}; {stuck}")
                channel.close()
                # The stream ran (the server came back): the waits start over. Not for a stream the server
                # ended for want of its configuration, which it does after 10 s: that one never ran.
                ran = self.opened is not None and time.monotonic() - self.opened >= RECONNECT_STEADY_S
                if ran and code != grpc.StatusCode.DEADLINE_EXCEEDED:
                    wait_s = RECONNECT_FIRST_S
                waited = wait_s * random.uniform(1 - RECONNECT_JITTER, 1 + RECONNECT_JITTER)
                self.tell(f"{options.server}: {code.name}: {details}; a new stream in {waited:.1f} s")
                time.sleep(waited)
                wait_s = min(2 * wait_s, RECONNECT_MAX_S)
                self.new_stream()
        finally:
            self.report_source()
            if self.end_stream():
                self.source.frames.close()
            if channel is not None:
                channel.close()
            self.close_annotator()

    def new_stream(self) -> None:
        """Before the next stream: the server numbers its people afresh, so what was drawn of the
        last stream's people (labels, skeletons) is finished and forgotten."""
        self.tell(f"{self.options.server}: opening a new stream (person numbers start over)")
        if self.annotator is not None:
            self.annotator.new_stream()

    def close_annotator(self) -> None:
        if self.annotator is None:
            return
        annotator = self.annotator
        annotator.close()
        if not annotator.written:
            return
        timing = [
            f"{annotator.repeated} repeated where the source was slower than {annotator.fps:g} fps"
            if annotator.repeated
            else "",
            f"{annotator.left_out} left out where it was faster" if annotator.left_out else "",
            f"{annotator.cut_s:.2f} s without frames cut" if annotator.cut_s else "",
            f"{annotator.writer_behind} not drawn: the video writer fell behind" if annotator.writer_behind else "",
        ]
        said = "; ".join(part for part in timing if part)
        self.tell(f"wrote {self.options.out} ({annotator.written} frames" + (f": {said})" if said else ")"))


def run_client(options: ClientOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    quiet_ffmpeg_log()  # the client says what is wrong with a file, and that it was cut short
    if options.out is not None:  # before a camera is opened for nothing
        from service.draw import check_output

        check_output(options.out)
    source = open_source(options.source)
    if options.reconnect and not source.live:
        source.frames.close()
        raise InputError(f"{options.source}: --reconnect is for cameras and network streams (a file is sent once)")
    if options.fast and source.live:
        source.frames.close()
        raise InputError(f"{options.source}: --fast is for files (a camera or network stream sends at its own pace)")
    with sigterm_as_interrupt():
        return ClientRun(options, source, out or sys.stdout, err or sys.stderr).run()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (systemd, ``docker stop``) ends a client as Ctrl-C does: the stream is closed,
    the statistics told and ``--out``'s video finished, not cut off unreadable."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
