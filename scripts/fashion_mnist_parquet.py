"""Write Fashion-MNIST (Debian's dataset-fashion-mnist, as data=fashion_mnist reads it) as a Hugging Face dataset of
Parquet files, the way a copy downloaded from the Hub is kept on disk: <out>/train.parquet and <out>/test.parquet,
an Image column of PNG files and a ClassLabel. ``data=hf data.path=<out>`` then trains on it:

    python scripts/fashion_mnist_parquet.py /tmp/fashion_parquet
    python train.py data=hf data.path=/tmp/fashion_parquet data.image_size=64 data.samples_per_class=20 \
        data.eval_per_class=100 data.batch_size=16 data.eval_batch_size=100
"""

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for train.parquet and test.parquet")
    args = parser.parse_args()

    import datasets

    from tl_lightning.data.fashion_mnist import CLASS_NAMES, FILES, _find, locate_idx_dir, read_idx

    directory = locate_idx_dir(None, "data")
    if directory is None:
        raise SystemExit("Fashion-MNIST IDX files not found: apt-get install dataset-fashion-mnist (make data)")
    arrays = {k: read_idx(_find(directory, stem)) for k, stem in FILES.items()}
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASS_NAMES))})
    os.makedirs(args.out, exist_ok=True)
    datasets.disable_progress_bar()
    for split in ("train", "test"):
        ds = datasets.Dataset.from_dict({"image": list(arrays[f"{split}_images"]),
                                         "label": arrays[f"{split}_labels"].tolist()}, features=features)
        ds.to_parquet(os.path.join(args.out, f"{split}.parquet"))
        print(f"{split}: {len(ds):,} images -> {os.path.join(args.out, f'{split}.parquet')}")


if __name__ == "__main__":
    main()
