"""The gRPC server: the ``ActionRecognition`` servicer, health, reflection, and its life cycle.

Life cycle: ``start`` binds the port and answers health checks with NOT_SERVING (and calls with
UNAVAILABLE) while ``load`` loads and warms up the models and the pose model; then SERVING.
``drain`` (SIGTERM) turns health to NOT_SERVING, refuses new calls, lets every open stream
finish the windows of the frames it has, sends their events and final statistics, ends the
streams with UNAVAILABLE (reconnect elsewhere), and stops.
"""

from __future__ import annotations

import errno
import functools
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.actions import DEFAULT_SET, MAX_EXAMPLES, EnrolledAction, check_name, open_store
from service.admission import Admission
from service.auth import TokenAuth
from service.batcher import Batcher
from service.clips import answer_clip
from service.config import ServerConfig, SettingError
from service.errors import DeadlineExceeded, Unavailable, status_of
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from service.labels import custom_labels, top_labels
from service.metrics import Metrics
from service.models import LoadedModel, ModelRegistry
from service.parsing import TolerantRequests, parsed
from service.runtime import Runtime, Slots, mediapipe_factory
from service.scheduling import become_io_thread
from service.session import DEFAULT_TOP_K, FrameSession, SkeletonSession, StreamSession, stream_options
from service.skeletons import resolve_format
from service.workers import PoseWorkers
from skeleton.errors import InputError
from skeleton.pose.estimator import PoseEstimator

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ActionRecognition"].full_name
REPLICA_HEADER = "actionrec-replica"
MAX_CALL_SECONDS = 120.0  # a unary call without a deadline still ends
QUICK_CALL_THREADS = 8  # handler threads beyond the streams' and clip calls' own
# Once the streams have drained, calls still running get this long; long-lived watches (health)
# would otherwise hold the exit up for the whole drain time.
STOP_GRACE_SECONDS = 3.0


def _status(error: BaseException, method: str) -> tuple[str, str]:
    """The status a failed call ends with; a bug is logged and becomes INTERNAL."""
    status = status_of(error)
    if status is None:
        log.error("call failed", exc_info=error, extra={"fields": {"method": method}})
        status = ("INTERNAL", "internal error")
    return status


def _call(method: Callable) -> Callable:
    """Unary calls: errors meant for the caller become their status; anything else INTERNAL."""

    @functools.wraps(method)
    def handler(self: Servicer, request, context: grpc.ServicerContext):
        context.set_trailing_metadata(((REPLICA_HEADER, self.server.config.replica_id),))
        code = "OK"
        try:
            return method(self, parsed(request, "the request"), context)
        except Exception as e:
            code, message = _status(e, method.__name__)
            context.abort(getattr(grpc.StatusCode, code), message)
        finally:
            self.server.metrics.rpcs.labels(method=method.__name__, code=code).inc()

    return handler


def _deadline(context: grpc.ServicerContext) -> float:
    """When a unary call's work must be done (``time.monotonic()``): its client's deadline, at
    most ``MAX_CALL_SECONDS`` from now. Taken once a call, so that every clip of an enrolment
    shares it."""
    remaining = context.time_remaining()
    return time.monotonic() + (MAX_CALL_SECONDS if remaining is None else max(0.0, min(remaining, MAX_CALL_SECONDS)))


def model_info(model: LoadedModel, is_default: bool, config: ServerConfig) -> pb.ModelInfo:
    """What the model file says of itself, and how this server takes frames for it (clients size
    what they send by that: nothing wider than the server poses, no clip longer than it takes)."""
    card, spec = model.card, model.card.window
    return pb.ModelInfo(
        name=model.name,
        card_name=card.name,
        labels=card.labels,
        layout=spec.layout,
        dims=spec.dims,
        window_length=spec.length,
        frame_rate=spec.fps,
        normalization=spec.normalization,
        input_space=card.input_space,
        embedding_size=card.embedding_size,
        version=model.version,
        accuracy=card.accuracy,
        training_data=card.training_data,
        protocol=card.protocol,
        source_commit=card.source_commit,
        created=card.created,
        execution_providers=model.running_on,
        is_default=is_default,
        pose_width=config.pose_width,
        max_clip_frames=config.max_clip_frames,
        max_message_bytes=config.max_message_bytes,
        max_people=config.max_people,
    )


def action_info(action: EnrolledAction) -> pb.ActionInfo:
    return pb.ActionInfo(
        action_set=action.action_set,
        action=action.action,
        model=action.model,
        examples=len(action.embeddings),
        model_version=action.model_version,
        updated=action.updated,
    )


class Servicer(pb_grpc.ActionRecognitionServicer):
    def __init__(self, server: ActionServer) -> None:
        self.server = server

    # ------------------------------------------------------------------ streams

    def StreamFrames(self, request_iterator, context):
        def open_session(config: pb.StreamConfig, runtime: Runtime) -> StreamSession:
            return FrameSession(stream_options(config, runtime), runtime)

        return self._stream("StreamFrames", request_iterator, context, open_session)

    def StreamSkeletons(self, request_iterator, context):
        def open_session(config: pb.SkeletonStreamConfig, runtime: Runtime) -> StreamSession:
            options = stream_options(config.stream, runtime, posed=False)
            return SkeletonSession(options, runtime, resolve_format(config.format, options.model.card.window))

        return self._stream("StreamSkeletons", request_iterator, context, open_session)

    def _stream(self, method: str, requests, context: grpc.ServicerContext, open_session):
        context.set_trailing_metadata(((REPLICA_HEADER, self.server.config.replica_id),))
        code = "OK"
        try:
            runtime = self.server.runtime_for_calls()
            # The slot is taken before the first message: a stream waiting for its configuration
            # holds a handler thread too, so it counts against the limit.
            runtime.slots.acquire()
            session = None
            try:
                first, cancelled = self._first_message(requests, context)
                if first is not None:
                    if parsed(first, "the stream's first message").WhichOneof("kind") != "config":
                        raise InputError("the first message of a stream must be its configuration")
                    session = open_session(first.config, runtime)
            finally:
                if session is None:  # no session to hold the slot: no word, bad input or a failure
                    runtime.slots.release()
            if session is None:  # closed before a word (OK), or went away or was cancelled
                code = "CANCELLED" if cancelled else "OK"
                return
            yield from self._run_session(session, requests, context, runtime)
        except GeneratorExit:  # the client went away: gRPC closes the response generator
            code = "CANCELLED"
            raise
        except Exception as e:
            code, message = _status(e, method)
            context.abort(getattr(grpc.StatusCode, code), message)
        finally:
            self.server.metrics.rpcs.labels(method=method, code=code).inc()

    def _first_message(self, requests, context: grpc.ServicerContext) -> tuple[object | None, bool]:
        """(the stream's first message, False); or (None, False) when the client closed first;
        or (None, True) when it went away before a word. Raises ``DeadlineExceeded`` when nothing
        came within ``config_seconds``: the stream then ends with that status and its thread is free."""
        seconds = self.server.config.config_seconds
        arrived: queue.Queue = queue.Queue(maxsize=1)

        # A helper thread reads, and this one waits with a time limit: gRPC's sync server gives a
        # call its status only from the handler's thread, so a timer could only cancel the call,
        # and its client would see CANCELLED without a word of why. Once the call has ended with
        # the status, gRPC ends the helper's read too.
        def read_first() -> None:
            try:
                arrived.put((next(requests, None), None))
            except Exception as e:  # cancelled before a word (RpcError), or a message gRPC could not read
                arrived.put((None, e))

        threading.Thread(target=read_first, name="stream-first-message", daemon=True).start()
        try:
            first, error = arrived.get(timeout=seconds)
        except queue.Empty:
            log.warning("stream sent no configuration in time; ended", extra={"fields": {"seconds": seconds}})
            raise DeadlineExceeded(
                f"the stream sent no configuration within {seconds:g} s of opening: its first message must be its"
                " configuration"
            ) from None
        if isinstance(error, grpc.RpcError):
            return None, True
        if error is not None:
            raise error
        return first, first is None and not context.is_active()

    def _end_session(self, session: StreamSession) -> None:
        """Close a stream whose call ended (nothing to do if it finished): gRPC cancels the calls
        still open when the server stops, and what those streams had pending goes as shutdown."""
        session.close("shutdown" if self.server.shutting_down else "cancelled")

    def _run_session(self, session: StreamSession, requests, context, runtime: Runtime):
        fields = {"stream_id": session.options.stream_id, "kind": session.kind, "model": session.options.model.name}
        log.info("stream opened", extra={"fields": fields})
        active = self.server.metrics.active_streams.labels(kind=session.kind)
        active.inc()
        self.server.sessions.add(session)
        try:  # from here the stream holds its slot: whatever fails below, the finally gives it back
            if self.server.draining:  # the drain began while this stream was opening: it takes no frames
                session.drain()
            call_ended = functools.partial(self._end_session, session)
            context.add_callback(call_ended)
            reader = threading.Thread(
                target=session.read, args=(requests, call_ended), name="stream-reader", daemon=True
            )
            reader.start()
            yield from session.responses()
        finally:
            try:
                self._end_session(session)
            finally:  # whatever closing raised, the stream's slot is given back
                self.server.sessions.discard(session)
                runtime.slots.release()
                active.dec()
            stats = session.stats()
            log.info(
                "stream closed",
                extra={
                    "fields": {
                        **fields,
                        "received": stats.frames_received,
                        "processed": stats.frames_processed,
                        "skipped": stats.frames_skipped,
                        "dropped": dict(stats.frames_dropped),
                        # a frame still in a pose worker when the stream ended is settled (dropped) after this
                        "pending": stats.frames_pending,
                        "windows": stats.windows_classified,
                    }
                },
            )
        if session.drained:
            raise Unavailable("the server is shutting down; reconnect (to another replica)")

    # ------------------------------------------------------------------ unary calls

    @_call
    def ClassifyClip(self, request, context):
        deadline = _deadline(context)
        runtime = self.server.runtime_for_calls()
        model = runtime.models.get(request.model)
        if request.action_set:
            runtime.actions.require(model.name, model.version, request.action_set)
        with runtime.call_slots:
            answer = answer_clip(request.clip, model, runtime, deadline, context.is_active)
        top_k = request.top_k or DEFAULT_TOP_K  # for classes and enrolled actions alike (stream_options)
        prototypes = (
            runtime.actions.prototypes(model.name, model.version, request.action_set) if request.action_set else None
        )
        return pb.ClassifyClipResponse(
            labels=top_labels(model.card.labels, answer.probabilities, top_k),
            custom_labels=custom_labels(prototypes, answer.embedding, top_k),
            embedding=answer.embedding.tolist() if request.include_embedding else [],
            track_id=answer.track_id,
            start_ms=round(answer.start_ms),
            end_ms=round(answer.end_ms),
            windows=answer.windows,
            model=model.name,
            frames_seen=answer.frames_seen,
        )

    @_call
    def GetModelInfo(self, request, context):
        runtime = self.server.runtime_for_calls()
        model = runtime.models.get(request.model)
        return model_info(model, model.name == runtime.models.default, runtime.config)

    @_call
    def ListModels(self, request, context):
        runtime = self.server.runtime_for_calls()
        return pb.ListModelsResponse(
            models=[model_info(m, m.name == runtime.models.default, runtime.config) for m in runtime.models],
            default_model=runtime.models.default,
        )

    @_call
    def EnrollAction(self, request, context):
        deadline = _deadline(context)
        runtime = self.server.runtime_for_calls()
        model = runtime.models.get(request.model)
        action_set = request.action_set or DEFAULT_SET
        check_name("action set", action_set)
        check_name("action", request.action)
        if not request.examples:
            raise InputError("enrolling an action needs at least one example clip")
        if len(request.examples) > MAX_EXAMPLES:
            raise InputError(f"{len(request.examples)} example clips; at most {MAX_EXAMPLES} a call")
        # Before the clips are posed: a call the store cannot take costs nothing.
        runtime.actions.check_room(model.name, model.version, action_set, request.action, len(request.examples))
        embeddings = []
        # The store's write (an fsync, seconds on a busy disk) is inside the slot too: it holds the
        # handler thread as long as the posing does, and a drain waits for the enrolment to be stored.
        with runtime.call_slots:
            for i, clip in enumerate(request.examples):
                try:
                    embeddings.append(answer_clip(clip, model, runtime, deadline, context.is_active).embedding)
                except InputError as e:
                    raise InputError(f"example {i}: {e}") from None
            enrolled, similarity = runtime.actions.enroll(
                model.name, model.version, action_set, request.action, np.stack(embeddings)
            )
        log.info(
            "action enrolled",
            extra={"fields": {"model": model.name, "action_set": action_set, "action": request.action}},
        )
        return pb.EnrollActionResponse(action=action_info(enrolled), self_similarity=similarity)

    @_call
    def ListActions(self, request, context):
        runtime = self.server.runtime_for_calls()
        return pb.ListActionsResponse(
            actions=[action_info(a) for a in runtime.actions.list(request.model, request.action_set)]
        )

    @_call
    def DeleteAction(self, request, context):
        runtime = self.server.runtime_for_calls()
        # By name, loaded or not: actions enrolled with a model this server does not load (any
        # more) are listed, so they can be deleted too.
        model = request.model or runtime.models.get("").name
        deleted = runtime.actions.delete(model, request.action_set or DEFAULT_SET, request.action)
        return pb.DeleteActionResponse(action=action_info(deleted))


class ActionServer:
    """One server process's service: ``start``, ``load``, then ``drain`` or ``stop``."""

    def __init__(self, config: ServerConfig, estimator_factory: Callable[[int], PoseEstimator] | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.sessions: set[StreamSession] = set()
        self.runtime: Runtime | None = None
        self._estimator_factory = estimator_factory or mediapipe_factory(config)
        self._draining = False
        self._shutting_down = False  # stop() has begun: streams gRPC cancels now end for the shutdown
        self._metrics_server = None
        # Set (by a signal) to stop: ``load`` then ends without ever reporting SERVING.
        self.stopping = threading.Event()
        self.health = health.HealthServicer(experimental_non_blocking=True)
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        interceptors = [TolerantRequests(f"/{SERVICE_NAME}/")]
        if config.auth_token:
            interceptors.append(TokenAuth(config.auth_token))
        # One handler thread per open stream and per clip call (both bounded by their slots), plus
        # threads that nothing holds for long: health checks, quick calls, refusals.
        self._handlers = ThreadPoolExecutor(
            config.max_streams + config.max_clip_calls + QUICK_CALL_THREADS,
            thread_name_prefix="grpc",
            initializer=become_io_thread,
        )
        self.grpc = grpc.server(
            self._handlers,
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it
                # Clients ping every 10 s on quiet streams (service.channels, to notice a frozen
                # server): that is expected, never a reason to close the connection.
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
        )
        pb_grpc.add_ActionRecognitionServicer_to_server(Servicer(self), self.grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc)
        self.port: int | None = None

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def draining(self) -> bool:
        return self._draining

    def runtime_for_calls(self) -> Runtime:
        if self._draining:
            raise Unavailable("the server is shutting down; reconnect (to another replica)")
        if self.runtime is None:
            raise Unavailable("the server is still loading its models")
        return self.runtime

    def start(self) -> int:
        """Bind and serve (health: NOT_SERVING until ``load``); returns the bound port."""
        config = self.config
        address = f"{config.host}:{config.port}"
        _check_address(config.host, config.port)
        if config.metrics_port is not None:
            # Before the gRPC port: a gRPC server that never started keeps its port while the
            # process lives, the metrics server lets go of its own.
            from prometheus_client import start_http_server

            try:
                self._metrics_server, _ = start_http_server(
                    config.metrics_port, addr=config.host, registry=self.metrics.registry
                )
            except OSError as e:
                raise SettingError(
                    "metrics_port", f"{config.metrics_port}: cannot listen on {config.host} ({e.strerror or e})"
                ) from None
        try:
            if config.tls_cert is not None:
                credentials = grpc.ssl_server_credentials(
                    [(Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())]
                )
                self.port = self.grpc.add_secure_port(address, credentials)
            else:
                self.port = self.grpc.add_insecure_port(address)
        except RuntimeError:  # this gRPC raises where older ones returned 0
            self.port = 0
        if not self.port:
            self._stop_metrics()
            raise SettingError("port", f"{config.port}: cannot listen on {address}")
        self.grpc.start()
        log.info(
            "listening",
            extra={
                "fields": {
                    "address": f"{config.host}:{self.port}",
                    "tls": config.tls_cert is not None,
                    "metrics_port": self.metrics_port,
                }
            },
        )
        return self.port

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_server.server_port if self._metrics_server is not None else None

    def load(self) -> None:
        """Load and warm up the models, the enrolled actions and the pose model; then SERVING."""
        config = self.config
        started = time.monotonic()
        models = ModelRegistry.load(
            config.models, config.models_dir, config.default_model, config.onnx_threads, config.max_batch
        )
        actions = open_store(config.actions_file)  # a damaged file is set aside, not fatal
        estimator = self._estimator_factory(1)  # a bad pose model fails here, not in the first stream
        try:
            estimator.estimate(np.zeros((64, 64, 3), dtype=np.uint8), 0)
        finally:
            estimator.close()
        batchers = {
            m.name: Batcher(
                m,
                config.max_batch,
                config.max_queue_delay_ms,
                config.max_batch_queue,
                self.metrics,
                on_failure=self._model_failed,
            )
            for m in models
        }
        pose_workers = PoseWorkers(config.workers, config.pin_workers, Admission(config.max_pose_load))
        for worker in pose_workers.workers:
            gauge = self.metrics.pose_load.labels(worker=str(worker.index))
            gauge.set_function(functools.partial(pose_workers.demand, worker))
        self.runtime = Runtime(
            config=config,
            models=models,
            batchers=batchers,
            pose_workers=pose_workers,
            actions=actions,
            metrics=self.metrics,
            make_estimator=self._estimator_factory,
            slots=Slots(config.max_streams, "streams"),
            call_slots=Slots(config.max_clip_calls, "clip calls"),
        )
        if self.stopping.is_set():  # asked to stop while loading: straight to the drain, never SERVING
            log.info("loaded, but stopping", extra={"fields": {"load_seconds": round(time.monotonic() - started, 2)}})
            return
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            extra={
                "fields": {
                    "models": models.names,
                    "default_model": models.default,
                    "workers": config.workers,
                    "max_pose_load": config.max_pose_load,
                    "load_seconds": round(time.monotonic() - started, 2),
                }
            },
        )

    def _model_failed(self, model: str) -> None:
        """A model's batcher stopped on an internal error: its windows fail from now on, so the
        replica is unhealthy (NOT_SERVING), for its orchestrator to replace it, not a busy one."""
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        log.critical("health is NOT_SERVING: a model failed", extra={"fields": {"model": model}})

    def drain(self, timeout: float | None = None) -> None:
        """Stop taking work, let open streams finish their windows, then stop."""
        timeout = self.config.drain_seconds if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.health.enter_graceful_shutdown()
        self._draining = True
        sessions = list(self.sessions)
        log.info("draining", extra={"fields": {"open_streams": len(sessions), "timeout_s": timeout}})
        for session in sessions:
            session.drain()
        if self.runtime is not None:
            self.runtime.slots.wait_idle(max(0.0, deadline - time.monotonic()))
            # A clip call under way (an enrolment of a few clips can take a while) finishes too,
            # within the same deadline: a rolling update should not lose it.
            self.runtime.call_slots.wait_idle(max(0.0, deadline - time.monotonic()))
        self.stop(grace=min(STOP_GRACE_SECONDS, max(0.0, deadline - time.monotonic())))

    def stop(self, grace: float | None = 0.0) -> None:
        self._shutting_down = True
        self.health.enter_graceful_shutdown()
        self._draining = True
        self.grpc.stop(grace).wait()
        for session in list(self.sessions):
            session.close("shutdown")
        if self.runtime is not None:
            self.runtime.close()
        self._handlers.shutdown(wait=False, cancel_futures=True)
        self._stop_metrics()
        log.info("stopped")

    def _stop_metrics(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None


def _check_address(host: str, port: int) -> None:
    """Refuse an address the server cannot listen on, saying why: gRPC only says that binding
    failed (and logs a line of its own)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise SettingError("host", f"{host}: cannot be resolved ({e.strerror})") from None
    failures = []
    for family, kind, protocol, _, address in addresses:
        try:
            with socket.socket(family, kind, protocol) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
                probe.bind(address)
            return  # gRPC listens if it can bind one of the host's addresses
        except OSError as e:
            failures.append(e)
    if failures:
        in_use = [e for e in failures if e.errno == errno.EADDRINUSE]
        setting, value = ("port", port) if in_use else ("host", host)
        error = (in_use or failures)[0]
        raise SettingError(setting, f"{value}: cannot listen on {host}:{port} ({error.strerror or error})")
