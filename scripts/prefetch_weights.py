"""Download a backbone's pretrained weights into the caches the harness reads (see tl_lightning/cli/prefetch.py;
console script: tl-prefetch).

    python scripts/prefetch_weights.py backbone=resnet50
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tl_lightning.cli.prefetch import run  # noqa: E402

if __name__ == "__main__":
    run()
