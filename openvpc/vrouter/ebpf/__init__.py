"""The eBPF fast path's Python side: the libbpf binding, the map layout and the map writer."""
