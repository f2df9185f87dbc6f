"""Logistic regression on raw pixels, on a harness run's splits.

See tl_lightning/cli/pixel_baseline.py; console script: tl-pixel-baseline.

    python scripts/pixel_baseline.py --out logs/budget_fashion/pixels --budgets 5,20,100 --seeds 0,1,2
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tl_lightning.cli.pixel_baseline import run  # noqa: E402

if __name__ == "__main__":
    run()
