"""Where things are: the repository, the shared gateway captures beside it, test artifacts."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"  # real gateway captures, beside the checkout
ARTIFACTS = REPO / "tests" / "artifacts"  # screenshots for a human to look at (git-ignored)
