"""Summarise a sweep into report.md + report.png (see tl_lightning/cli/report.py; console script: tl-report).

    python scripts/report.py logs/train/multiruns/<date>_<time>
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tl_lightning.cli.report import run  # noqa: E402

if __name__ == "__main__":
    run()
