# roadeye developer entry points. Every target creates or reuses .venv and installs what it needs.
#   make demo   set up and replay a sample clip through the edge into the collector
#   make test   set up (incl. Debian services) and run the whole test suite
#   make bench  benchmarks, printed as JSON
#   make soak   30-minute soak of edge -> broker -> collector, printed as JSON
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := False
export YOLO_CONFIG_DIR := $(CURDIR)/.yolo
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export OMP_NUM_THREADS ?= 1
.DEFAULT_GOAL := test

APT_PKGS := mosquitto mosquitto-clients ffmpeg chromium fonts-noto-cjk fonts-dejavu-core \
	python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad postgresql

# Long soak (default 30 min): looped replay into the collector, JSON report.
soak: sysdeps $(VENV)/.full yolo-config
	$(BIN)/python tests/bench/soak.py

.PHONY: demo test test-fast bench soak lint typecheck sysdeps venv-runtime venv-full yolo-config clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip wheel setuptools

# Runtime only (edge + server, CPU onnxruntime): no torch.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[edge,server,cpu]'
	touch $@

# Everything: runtime + training (torch, ultralytics) + test tools.
$(VENV)/.full: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[edge,server,cpu,train,dev]'
	touch $@ $(VENV)/.runtime

venv-runtime: $(VENV)/.runtime
venv-full: $(VENV)/.full

# Ultralytics looks for Arial.ttf in its config dir and would try to download it.
yolo-config:
	@mkdir -p .yolo/Ultralytics
	@test -f .yolo/Ultralytics/Arial.ttf || cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf .yolo/Ultralytics/Arial.ttf

# Debian packages for the real services the tests start (machines run as root with apt).
sysdeps:
	@missing=""; \
	command -v mosquitto >/dev/null || missing="$$missing mosquitto"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer','1.0'); from gi.repository import GstRtspServer" 2>/dev/null || missing="$$missing gst-rtsp"; \
	fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || missing="$$missing fonts"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages (missing:$$missing)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PKGS) >/dev/null; \
	fi

demo: sysdeps $(VENV)/.runtime
	$(BIN)/roadeye demo

test: sysdeps $(VENV)/.full yolo-config
	$(BIN)/python -m pytest

# Unit tests only (no services, no browser): a quick inner loop.
test-fast: $(VENV)/.full yolo-config
	$(BIN)/python -m pytest tests/unit -q

bench: sysdeps $(VENV)/.full yolo-config
	$(BIN)/python tests/bench/run_all.py

lint: $(VENV)/.full
	$(BIN)/ruff check edge server calibration models tests

typecheck: $(VENV)/.full
	$(BIN)/mypy

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache tests/artifacts
