"""The vRouter forwarding plane: tables, the pure pipeline over them, and table dumps."""
