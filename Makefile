# The project's two entry points: `make demo` (the main job) and `make test`.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := ../shared/data

.PHONY: setup test demo data image reliability clean

$(BIN)/actionrec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[cpu,serve,train,dev]'
	touch $@

setup: $(BIN)/actionrec

test: setup
	$(BIN)/python -m pytest

demo: setup
	scripts/demo.sh $(DATA)/videos/arm_wrestling.mp4

# The service image (CPU, on a Debian base made with debootstrap) built with podman; see the README.
image: setup
	scripts/image.sh build

# The reliability suite at full scale: 30-minute soak of 8 streams, >= 10,000 fuzz cases, faults,
# 1,000 abrupt disconnects, security. `make test` runs its short version.
reliability: setup
	ACTIONREC_RELIABILITY=full $(BIN)/python -m pytest tests/reliability -v -s

# Every real source converted into the project's dataset format (data/ is not committed).
data: setup
	$(BIN)/actionrec convert --format msr-action3d $(DATA)/msr-action3d -o data/msr.npz
	$(BIN)/actionrec convert --format nw-ucla $(DATA)/nw-ucla -o data/nw-ucla.npz
	$(BIN)/actionrec convert --format penn-action $(DATA)/penn-action-train -o data/penn.npz
	$(BIN)/actionrec convert --format ntu $(DATA)/ntu-sample -o data/ntu-sample.npz
	$(BIN)/actionrec convert --format bvh $(DATA)/cmu-mocap -o data/cmu.npz
	$(BIN)/actionrec convert --format bvh $(DATA)/bandai-namco/dataset-1/data -o data/bandai1.npz
	$(BIN)/actionrec convert --format bandai-positions $(DATA)/bandai-namco/dataset-2-positions.npz -o data/bandai2.npz
	$(BIN)/actionrec extract $(DATA)/videos -o data/videos.npz

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
