"""``python -m tl_lightning.predict ckpt_path=... input=...``: see tl_lightning/cli/predict.py."""

from tl_lightning.cli.predict import main

if __name__ == "__main__":
    main()
