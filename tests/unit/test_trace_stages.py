"""The stages a trace names are the `Stage` enum's, and docs/forwarding.md lists each of them."""

import re
from pathlib import Path

from openvpc.vrouter.trace import Stage

DOC = Path(__file__).resolve().parents[2] / "docs" / "forwarding.md"


def test_docs_list_every_stage_and_no_other() -> None:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `")]
    listed = {name for row in rows for name in re.findall(r"`([a-z_0-9]+)`", row.split("|")[1])}
    assert listed == {s.value for s in Stage}
