# Two entry points: `make demo` (the main job) and `make test` (everything CI runs).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-overlay bench-apply clean sysdeps

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP) sysdeps
	$(VENV)/bin/openvpc demo

lint: $(STAMP)
	$(VENV)/bin/ruff check openvpc tests bench
	$(VENV)/bin/ruff format --check openvpc tests bench
	$(VENV)/bin/mypy

# the real lab needs ping, iperf3, tshark, tcpdump, dhclient and ip, the TLS test openssl (Debian packages)
sysdeps:
	bash .ci/sysdeps

test: $(STAMP) sysdeps lint
	$(VENV)/bin/pytest tests

bench: $(STAMP)
	$(PY) -m bench.pipeline

# every path, 5 interleaved samples of 5 s (root; about half an hour; installs Open vSwitch when
# missing) and the table into bench/RESULTS.md; a smoke run: BENCH_ARGS="--seconds 1 --samples 1
# --paths kernel,python-vxlan"; the eBPF objects first once their sources exist
bench-overlay: $(STAMP) sysdeps $(if $(wildcard openvpc/vrouter/bpf/*.c),bpf)
	$(PY) -m bench.overlay --record $(BENCH_ARGS)

# applying topologies of 100, 500 and 1,000 VMs to a store (no namespaces, no root)
bench-apply: $(STAMP)
	$(PY) -m bench.apply

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
