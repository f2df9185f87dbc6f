"""Save images of a checkpoint's test split as files (PNG and JPEG alternately, named <class>_<n>.<ext>): a folder
to try ``predict`` on, with the true class in each file name; ``--by-class`` writes <folder>/<class>/<n>.<ext>
instead, the layout ``data=image_folder`` reads (to try ``eval`` on other data).

    python scripts/save_test_images.py <run dir>/checkpoints/best.ckpt new_images --count 20
    python scripts/save_test_images.py <run dir>/checkpoints/best.ckpt labelled --count 50 --by-class
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("folder")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--by-class", action="store_true", help="one subfolder per class (data=image_folder)")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from tl_lightning.config.validate import validate_data
    from tl_lightning.data import build_datamodule
    from tl_lightning.deploy.evaluate import folder_safe
    from tl_lightning.errors import TLError
    from tl_lightning.inference import load

    try:
        model = load(args.checkpoint)
        if model.preprocessing.modality != "image":
            raise TLError(f"{args.checkpoint} is a {model.preprocessing.modality} model; this script saves images")
        datamodule = build_datamodule(validate_data(model.config["data"]), model.preprocessing)
        datamodule.setup("fit")
    except TLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    test = datamodule.datasets["test"]
    os.makedirs(args.folder, exist_ok=True)
    picks = np.linspace(0, len(test) - 1, num=min(args.count, len(test))).round().astype(int)
    for n, k in enumerate(picks):
        i = int(test.indices[k])
        label = datamodule.class_names[int(test.label_map[test.source.targets[i]])]
        safe = "".join(c if c.isalnum() else "-" for c in label)
        image = test.source.sample(i)
        image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        name = f"{safe}_{n:03d}.{'png' if n % 2 == 0 else 'jpg'}"
        if args.by_class:  # eval matches classes by name, or by this folder-safe form ("T-shirt/top": T-shirt-top)
            os.makedirs(os.path.join(args.folder, folder_safe(label)), exist_ok=True)
            name = os.path.join(folder_safe(label), name)
        image.save(os.path.join(args.folder, name))
    print(f"saved {len(picks)} test images of {args.checkpoint} in {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
