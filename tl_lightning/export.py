"""``python -m tl_lightning.export ckpt_path=... format=onnx``: see tl_lightning/cli/export.py."""

from tl_lightning.cli.export import main

if __name__ == "__main__":
    main()
