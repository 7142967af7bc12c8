# The actionrec service for edge GPUs (and CPUs).
#
#   python scripts/wheelhouse.py                     # once: every wheel the image installs
#   podman build --format docker -t actionrec .      # or docker build -t actionrec .
#   docker run --gpus all --stop-timeout 40 -p 50051:50051 -p 9100:9100 actionrec   # 40 s: the 30 s drain and a little
#
# CPU-only image: --build-arg ONNXRUNTIME=cpu (with `scripts/wheelhouse.py --onnxruntime cpu`),
# on any Debian or Ubuntu base: --build-arg BASE_IMAGE=debian:bookworm-slim. The two bases differ
# in the FROM line alone; everything below runs the same on both. README: "Container image".

# onnxruntime-gpu 1.31.1 (PyPI) is built for CUDA 13.x and cuDNN 9: this runtime image carries both.
ARG BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

# --- system: Python and the shared libraries OpenCV and MediaPipe link against ------------------
FROM ${BASE_IMAGE} AS system
# libgl1/libglib2.0-0: cv2; libegl1/libgles2: MediaPipe's tasks library (it links EGL and GLES
# even when posing on the CPU).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends \
        python3 python3-venv libgl1 libglib2.0-0 libegl1 libgles2 \
 && rm -rf /var/lib/apt/lists/*

# --- build: the virtual environment, from the wheelhouse only ------------------------------------
FROM system AS build
ARG ONNXRUNTIME=gpu
COPY wheelhouse/ /wheelhouse/
RUN python3 -m venv /opt/actionrec/venv \
 && /opt/actionrec/venv/bin/pip install --no-cache-dir --no-index --find-links /wheelhouse \
        "actionrec[${ONNXRUNTIME},serve]" \
 && /opt/actionrec/venv/bin/pip uninstall --yes pip \
 && if /opt/actionrec/venv/bin/python -c "import torch" 2>/dev/null; then echo "torch must not be in the image" >&2; exit 1; fi

# --- serve-without-models: mount a models folder at /opt/actionrec/models -------------------------
FROM system AS serve-without-models
RUN useradd --uid 10001 --user-group --home-dir /var/lib/actionrec --create-home --shell /usr/sbin/nologin actionrec
COPY --from=build /opt/actionrec/venv /opt/actionrec/venv
ENV PATH=/opt/actionrec/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ACTIONREC_MODELS_DIR=/opt/actionrec/models \
    ACTIONREC_POSE_MODEL=/opt/actionrec/models/pose_landmarker_full.task \
    ACTIONREC_ACTIONS_FILE=/var/lib/actionrec/actions.json \
    ACTIONREC_PORT=50051 \
    ACTIONREC_METRICS_PORT=9100
# Enrolled custom actions live here: mount a volume to keep them across containers.
VOLUME /var/lib/actionrec
USER actionrec
EXPOSE 50051 9100
# SIGTERM drains: health turns NOT_SERVING and open streams finish their windows (allow
# ACTIONREC_DRAIN_SECONDS, 30 s by default, plus a little: `docker run --stop-timeout 40` or
# `docker stop --time 40`; docker's own default is 10 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "actionrec health --server 127.0.0.1:${ACTIONREC_PORT}"]
ENTRYPOINT ["actionrec"]
CMD ["serve"]

# --- serve (default): the shipped models baked in ---------------------------------------------
FROM serve-without-models AS serve
COPY models/*.onnx models/*.task /opt/actionrec/models/
