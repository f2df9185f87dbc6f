"""``python -m tl_lightning.diagnose rank|gap ...``: see tl_lightning/cli/diagnose.py."""

from tl_lightning.cli.diagnose import main

if __name__ == "__main__":
    main()
