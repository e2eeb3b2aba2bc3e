# Two entry points: `make demo` (the main job) and `make test` (everything CI runs).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the eBPF datapath: every C source is one object; any header change rebuilds them all
BPF_DIR := openvpc/vrouter/bpf
BPF_OBJS := $(patsubst %.c,%.bpf.o,$(wildcard $(BPF_DIR)/*.c))
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -I/usr/include/$(shell uname -m)-linux-gnu

.PHONY: demo test lint bench bench-overlay bench-policy bench-apply clean sysdeps bpf

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP) sysdeps bpf
	$(VENV)/bin/openvpc demo

lint: $(STAMP)
	$(VENV)/bin/ruff check openvpc tests bench
	$(VENV)/bin/ruff format --check openvpc tests bench
	$(VENV)/bin/mypy

bpf: $(BPF_OBJS)

$(BPF_DIR)/%.bpf.o: $(BPF_DIR)/%.c $(wildcard $(BPF_DIR)/*.h) | sysdeps
	clang $(BPF_CFLAGS) -c $< -o $@

# the real lab needs ping, iperf3, tshark, tcpdump, dhclient and ip, the TLS test openssl, the eBPF
# datapath clang, libbpf-dev (with libbpf1) and bpftool (Debian packages)
sysdeps:
	bash .ci/sysdeps

test: $(STAMP) sysdeps bpf lint
	$(VENV)/bin/pytest tests

bench: $(STAMP)
	$(PY) -m bench.pipeline

# every path, 5 interleaved samples of 5 s (root; about half an hour; installs Open vSwitch when
# missing) and the table into bench/RESULTS.md; a smoke run: BENCH_ARGS="--seconds 1 --samples 1
# --paths kernel,python-vxlan"
bench-overlay: $(STAMP) sysdeps bpf
	$(PY) -m bench.overlay --record $(BENCH_ARGS)

# new TCP connections/s and TCP throughput with heavy security groups and a network ACL, next
# to a group allowing everything and kernel VXLAN, 5 interleaved rounds of 5 s (root) and the
# table into bench/RESULTS.md; a smoke run: BENCH_ARGS="--seconds 1 --samples 1"
bench-policy: $(STAMP) sysdeps bpf
	$(PY) -m bench.policy --record $(BENCH_ARGS)

# applying topologies of 100, 500 and 1,000 VMs to a store (no namespaces, no root)
bench-apply: $(STAMP)
	$(PY) -m bench.apply

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis $(BPF_OBJS)
