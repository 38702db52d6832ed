# The two entry points a person needs, both doing all set-up first (idempotent):
#   make run   -- set up, then trace TCP connects:  engine run specs/tcpconnect.yaml
#   make test  -- set up, then lint, type-check and run every test (kernel tests need root),
#                 then the VM kernel suite (make test-vm; skip it with SKIP_VM=1)
VENV   := .venv
ENGINE := $(VENV)/bin/engine
PY     := $(VENV)/bin/python
ARGS   ?=
# bench.hist and bench.profile take --quick from ARGS (their other flags differ from
# bench.run's): HIST_ARGS adds more
HIST_ARGS ?= $(filter --quick,$(ARGS))

.PHONY: setup run test test-vm lint unit golden bench bench-hist fuzz clean

setup:
	@bash scripts/setup.sh

run: setup
	$(ENGINE) run specs/tcpconnect.yaml $(ARGS)

lint: setup
	$(VENV)/bin/ruff check engine tests bench
	$(VENV)/bin/ruff format --check engine tests bench
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest $(ARGS)
ifneq ($(SKIP_VM),1)
	$(MAKE) --no-print-directory test-vm
endif

# Boot Debian's stock 6.1 and 6.12 kernels (they have kprobes and fentry) under QEMU on this
# machine's own root file system and run tests/vm inside each; ~15 min under emulation.
test-vm: setup
	bash scripts/vm-kernels.sh $(KERNELS)

unit: setup
	$(PY) -m pytest tests/unit $(ARGS)

# Regenerate the golden files of rendered C and decoders (review the diff, then commit).
golden: setup
	$(PY) -m tests.golden.regenerate

# The long, randomized fuzz run (tests/fuzz; `make test` runs a small, fixed one). Budget:
#   make fuzz FUZZ_EXAMPLES=20000 FUZZ_COMPILE_EXAMPLES=200
FUZZ_EXAMPLES         ?= 5000
FUZZ_COMPILE_EXAMPLES ?= 60
fuzz: setup
	FUZZ_LONG=1 FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_COMPILE_EXAMPLES=$(FUZZ_COMPILE_EXAMPLES) \
		$(PY) -m pytest tests/fuzz -p no:cacheprovider $(ARGS)

bench: setup
	ENGINE_SETUP_BENCH=1 bash scripts/setup.sh
	$(PY) -m bench.run $(ARGS)
	$(PY) -m bench.hist $(HIST_ARGS)
	$(PY) -m bench.profile $(HIST_ARGS)

# Only the histogram case: engine vs bpftrace hist() (docs/performance.md, "Histograms").
bench-hist: setup
	ENGINE_SETUP_BENCH=1 bash scripts/setup.sh
	$(PY) -m bench.hist $(HIST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
