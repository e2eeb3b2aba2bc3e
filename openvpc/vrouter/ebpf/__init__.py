"""The eBPF fast path's Python side: map layouts, encoders, the libbpf binding and the shell."""
