"""Desired state -> per-node forwarding state (pure; golden-testable)."""
