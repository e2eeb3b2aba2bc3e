"""Frozen dataclasses shared by the controller, the agent and the vRouter."""
