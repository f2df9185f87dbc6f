"""Write docs/reference/config.md from the schemas and the option files (tl_lightning/config/reference.py).

    python scripts/config_reference.py           # rewrite the page
    python scripts/config_reference.py --check   # exit 1 when the page is stale (what tests/test_docs.py checks)
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tl_lightning.config.reference import PAGE, render  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the page differs")
    args = parser.parse_args(argv)
    page, text = ROOT / PAGE, render()
    if args.check:
        if not page.is_file() or page.read_text() != text:
            print(f"{PAGE} is stale: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        print(f"{PAGE} is up to date")
        return 0
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
    print(f"wrote {PAGE} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
