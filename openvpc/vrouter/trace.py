"""A recorder for the pipeline: each stage notes what it did, for `openvpc trace` and tests."""

from collections.abc import Callable
from dataclasses import dataclass, field

Recorder = Callable[[str, str], None]


@dataclass
class Trace:
    """Collects (stage, detail) steps; pass an instance as the pipeline's recorder."""

    steps: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, stage: str, detail: str) -> None:
        self.steps.append((stage, detail))

    def stages(self) -> list[str]:
        return [s for s, _ in self.steps]

    def render(self) -> str:
        return "\n".join(f"{stage:<12} {detail}" for stage, detail in self.steps)
