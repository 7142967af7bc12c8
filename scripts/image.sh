#!/usr/bin/env bash
# Build the service image with podman, here and in CI, without pulling from any registry.
#
#   scripts/image.sh tools   # podman, runc and debootstrap (apt-get, as root) when missing
#   scripts/image.sh base    # a Debian bookworm base made with debootstrap, imported into podman
#   scripts/image.sh build   # all of the above, the wheelhouse, and the CPU image on that base
#
# The GPU image is the same Dockerfile with its default base (see the README, "Container image").
# Environment: IMAGE (default localhost/actionrec:cpu), BASE_IMAGE (default: the local Debian base),
# ONNXRUNTIME (cpu), WHEEL_PYTHON (the base's Python, 3.11 for bookworm).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/actionrec:cpu}
DEBIAN_BASE=localhost/actionrec-base:bookworm-minbase
BASE_IMAGE=${BASE_IMAGE:-$DEBIAN_BASE}
ONNXRUNTIME=${ONNXRUNTIME:-cpu}
WHEEL_PYTHON=${WHEEL_PYTHON:-3.11}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
# Inside a container host crun may not set up cgroups and setrlimit may be forbidden: runc, no ulimits.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/scripts/podman/containers.conf}
PODMAN=(podman --runtime runc)

tools() {
    local missing=()
    for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    echo "image: installing ${missing[*]}" >&2
    "${sudo[@]}" apt-get install --yes --quiet "${missing[@]}" >/dev/null \
        || { "${sudo[@]}" apt-get update --quiet >/dev/null && "${sudo[@]}" apt-get install --yes --quiet "${missing[@]}" >/dev/null; }
}

base() {
    tools
    if "${PODMAN[@]}" image exists "$DEBIAN_BASE"; then return 0; fi
    local root
    root=$(mktemp -d)
    echo "image: debootstrap bookworm (minbase) for $DEBIAN_BASE" >&2
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
    tar -C "$root" -c . | "${PODMAN[@]}" import --quiet - "$DEBIAN_BASE" >/dev/null
    rm -rf "$root"
}

build() {
    [ "$BASE_IMAGE" = "$DEBIAN_BASE" ] && base || tools
    "$PYTHON" scripts/wheelhouse.py --onnxruntime "$ONNXRUNTIME" --python "$WHEEL_PYTHON" 2>/dev/null
    # docker format: OCI images have no HEALTHCHECK.
    "${PODMAN[@]}" build --format docker --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg ONNXRUNTIME="$ONNXRUNTIME" --tag "$IMAGE" .
    "${PODMAN[@]}" image prune --force >/dev/null
    echo "image: $IMAGE, $("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')" >&2
}

case "${1:-build}" in
    tools) tools ;;
    base) base ;;
    build) build ;;
    *) echo "usage: $0 tools|base|build" >&2; exit 2 ;;
esac
