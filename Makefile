# The README's two commands: `make gen` and `make test`. Both set the machine up first.
PY := .venv/bin/python
export AMARANTH_USE_YOSYS := builtin

.PHONY: setup gen test test-all fpga-target bench clean
setup:
	@bash scripts/bootstrap.sh

gen: setup
	$(PY) -m gen --rows 32 --cols 96 -o build/
	@echo "output: $(CURDIR)/build/ ($$(ls build | tr '\n' ' '))"

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

# The ECP5 target build alone (fully parallel 32x96 at 100 MHz, 16-31 minutes).
fpga-target: setup
	$(PY) -m pytest -q -s -m slow tests/test_fpga_build.py -k fully_parallel_meets_100mhz

bench: setup
	$(PY) -m bench.gen_speed
	$(PY) -m bench.model_speed
	$(PY) -m bench.rtl_speed

clean:
	rm -rf build .pytest_cache
