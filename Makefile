# The README's commands. `make demo` and `make test` each set up a fresh machine first.
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup demo test test-fast bench clean-demo

setup:
	bash scripts/setup.sh

# The whole demo grid on the CPU: train every agent on two tasks x 2 seeds, aggregate, plot, report;
# `recorded` adds the validation runs kept in docs/validation/runs (real 40k-frame runs, drawn
# without training: config/recorded.yaml) as the report's section "Recorded validation runs".
demo: setup
	$(VENV)/snakemake --cores 2 all recorded --configfile config/demo.yaml
	$(VENV)/snakemake --report results/report.html all recorded --configfile config/demo.yaml

# The whole test suite, the real SLURM cluster included, on two workers (docs/testing.md); a
# slow or slurm test that skips fails the run.
PYTEST := $(VENV)/python -m pytest -ra -n 2 --dist loadgroup

test:
	bash scripts/setup.sh --slurm
	$(PYTEST) --require-all

# Everything but the cluster and the minute-long training runs.
test-fast: setup
	$(PYTEST) -m "not slurm and not slow"

bench: setup
	$(VENV)/python -m drm.bench
