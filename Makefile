# The README's two commands: `make gen` and `make test`. Both set the machine up first.
PY := .venv/bin/python
export AMARANTH_USE_YOSYS := builtin

.PHONY: setup gen test test-all bench clean
setup:
	@bash scripts/bootstrap.sh

gen: setup
	$(PY) -m gen --rows 32 --cols 96 -o build/
	@echo "output: $(CURDIR)/build/ ($$(ls build | tr '\n' ' '))"

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

bench: setup
	$(PY) -m bench.gen_speed
	$(PY) -m bench.model_speed
	$(PY) -m bench.rtl_speed

clean:
	rm -rf build .pytest_cache
