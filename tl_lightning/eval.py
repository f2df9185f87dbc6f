"""``python -m tl_lightning.eval ckpt_path=...``: see tl_lightning/cli/eval.py."""

from tl_lightning.cli.eval import main

if __name__ == "__main__":
    main()
