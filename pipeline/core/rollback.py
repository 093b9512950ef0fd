"""May `champion` be moved back to a version? A pure check of the version's status and tags."""
from __future__ import annotations

from typing import Mapping

# What every complete version carries (registered with them all, or not registered: docs/design.md).
REQUIRED_TAGS = ("precision", "gate.passed", "validation.passed", "registry.champion_decision")


def refusals(status: str, tags: Mapping[str, str]) -> list[str]:
    """Why the version should not serve; empty when it may. `--force` overrides these and records them."""
    out = []
    if status != "READY":
        out.append(f"its registration is {status}, not READY")
    missing = [t for t in REQUIRED_TAGS if t not in tags]
    if missing:
        out.append(f"it is incomplete (no {', '.join(missing)} tag)")
    if tags.get("gate.passed", "true") != "true":
        out.append("it failed its gate")
    if tags.get("validation.passed", "true") != "true":
        out.append("its data failed validation")
    if tags.get("serve.check") == "failed":
        out.append(f"it failed its servability check ({tags.get('serve.reason', 'no reason recorded')})")
    return out
