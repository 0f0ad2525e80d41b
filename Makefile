# Two entry points: `make demo` and `make test`. Both create/refresh .venv when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# TF=cpu (default, tensorflow-cpu wheel) or TF=gpu (tensorflow[and-cuda]); see BUILD.md.
TF ?= cpu
DATA ?=
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test venv clean bench

venv: $(VENV)/.installed-$(TF)

$(VENV)/.installed-$(TF): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -e ".[$(TF),dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: venv
	$(PY) tools/demo.py --output_dir=$(DEMO_OUT) $(if $(DATA),--data_dir=$(DATA))

test: venv
	$(PY) -m pytest -n 2 -q -rs $(PYTEST_ARGS)

bench: venv
	$(PY) benchmarks/detect.py

clean:
	rm -rf $(DEMO_OUT) demo_data .pytest_cache
