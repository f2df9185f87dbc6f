"""The non-deep baseline: multinomial logistic regression on raw pixels (image data) or on TF-IDF word and
bigram features (text data), on exactly a harness run's splits; with ``--features``, scikit-learn's logistic
regression on the backbone's frozen features (the very cache ``strategy=linear_probe`` fits on), the reference the
harness's L-BFGS probe is measured against.

    tl-pixel-baseline --out logs/budget_fashion/pixels --budgets 5,20,100,500 --seeds 0,1,2
    python scripts/pixel_baseline.py --out <dir> --budgets 20 --seeds 0 data=digits
    python scripts/pixel_baseline.py --features --out logs/probe/sklearn --seeds 0,1,2 data=fortunes

The data config is composed exactly as ``train.py`` composes it (same overrides), so the labelled budget, the
validation set and the test set are the ones a training run with the same seed uses (summary.json records the
split fingerprint to prove it). The inverse regularisation strength C is chosen on the validation split, never
on test. One summary.json per (budget, seed), with backbone "pixels" (or "tfidf"), so ``scripts/report.py``
draws it as a dashed line next to the strategies.
"""

# Imports of tl_lightning inside functions keep start-up fast: the config is checked before torch is imported.

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tl_lightning.context import RunLayout

C_GRID = (0.001, 0.01, 0.1, 1.0)
TFIDF_C_GRID = (0.1, 1.0, 10.0, 100.0)  # sparse, unscaled TF-IDF rows need weaker regularisation


def split_arrays(dm, split: str):
    """Raw pixels in [0, 1], one row per sample, and the (remapped) labels of one split."""
    from tl_lightning.errors import DataError

    ds = dm.datasets[split]
    images = [np.asarray(ds.source.sample(int(i)), dtype=np.float32) / 255.0 for i in ds.indices]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"the pixel baseline needs images of one size; data={dm.name} has {len(shapes)} "
                        f"({', '.join(map(str, sorted(shapes)[:3]))}, ...): use Fashion-MNIST, digits or CIFAR")
    return np.stack([im.reshape(-1) for im in images]), np.asarray(ds.targets)


def split_texts(dm, split: str):
    ds = dm.datasets[split]
    return [ds.source.sample(int(i)) for i in ds.indices], np.asarray(ds.targets)


def features(dm):
    """(x, y) of train, val and test: standardised pixels, or TF-IDF fitted on the training texts."""
    if dm.modality == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        (ttr, ytr), (tva, yva), (tte, yte) = (split_texts(dm, s) for s in ("train", "val", "test"))
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(ttr)
        return (vec.transform(ttr), ytr), (vec.transform(tva), yva), (vec.transform(tte), yte)
    from sklearn.preprocessing import StandardScaler

    (xtr, ytr), (xva, yva), (xte, yte) = (split_arrays(dm, s) for s in ("train", "val", "test"))
    scaler = StandardScaler().fit(xtr)
    return (scaler.transform(xtr), ytr), (scaler.transform(xva), yva), (scaler.transform(xte), yte)


def fit_and_score(dm, c_grid=None, seed: int = 0):
    """Features (see ``features``), C chosen on val, val and test scored; returns (metrics, chosen C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    c_grid = c_grid or (TFIDF_C_GRID if dm.modality == "text" else C_GRID)
    (xtr, ytr), (xva, yva), (xte, yte) = features(dm)
    best = None
    for c in c_grid:
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(xtr, ytr)
        acc = accuracy_score(yva, model.predict(xva))
        if best is None or acc > best[0]:
            best = (acc, c, model)
    val_acc, c, model = best
    pred = model.predict(xte)
    labels = list(range(dm.num_classes))
    return {"val/acc": float(val_acc),
            "test/acc": float(accuracy_score(yte, pred)),
            "test/f1_macro": float(f1_score(yte, pred, average="macro", labels=labels, zero_division=0))}, c


def fit_features(cfg):
    """scikit-learn's LogisticRegression on the run's cached frozen features, C from the probe's grid chosen on val
    as the probe chooses it (accuracy, then validation loss); returns (metrics, C, datamodule)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    from tl_lightning.backbones.registry import build_backbone
    from tl_lightning.data.base import batch_size_for
    from tl_lightning.data.registry import build_datamodule
    from tl_lightning.features import load_or_build

    backbone = build_backbone(cfg.backbone, pretrained=cfg.backbone.pretrained, image_size=cfg.data.get("image_size"))
    dm = build_datamodule(cfg.data, backbone.preprocessing, cfg.paths.data_dir)
    dm.setup("fit")
    t, _how = load_or_build(backbone, dm, cfg.paths.cache_dir, batch_size_for(cfg.data, "test"))
    (xtr, ytr), (xva, yva), (xte, yte) = ((t[f"{s}_x"].double().numpy(), t[f"{s}_target"].numpy())
                                          for s in ("train", "val", "test"))
    from tl_lightning.config.schema import PROBE_GRID

    grid = cfg.strategy.get("probe_grid") or PROBE_GRID
    best = None
    for c in grid:
        model = LogisticRegression(C=c, max_iter=5000).fit(xtr, ytr)
        proba = model.predict_proba(xva)
        key = ((proba.argmax(1) == yva).mean(), np.log(proba[np.arange(len(yva)), yva] + 1e-12).mean())
        if best is None or key > best[0]:
            best = (key, c, model)
    (val_acc, _), c, model = best
    pred = model.predict(xte)
    return {"val/acc": float(val_acc), "test/acc": float((pred == yte).mean()),
            "test/f1_macro": float(f1_score(yte, pred, average="macro", labels=list(range(dm.num_classes)),
                                            zero_division=0))}, c, dm, backbone.name


def run_one(overrides, out_dir: Path, on_features: bool = False) -> dict:
    from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec
    from tl_lightning.compose import compose_config
    from tl_lightning.data.registry import build_datamodule

    start = time.time()
    cfg = compose_config(list(overrides), output_dir=str(out_dir))
    if on_features:
        metrics, c, dm, kind = fit_features(cfg)
        strategy = "sklearn_logreg"
    else:
        if cfg.backbone.kind in ("hf", "minilm"):  # the datamodule wants the backbone's modality; texts stay raw here
            from tl_lightning.backbones.registry import build_backbone

            prep = build_backbone(cfg.backbone, pretrained=False).preprocessing
        else:  # the spec only matters for the transforms, which this baseline does not use (it reads raw samples)
            prep = ImagePreprocessing(InputSpec(size=28, mean=(0.5,), std=(0.5,)))
        dm = build_datamodule(cfg.data, prep, cfg.paths.data_dir)
        dm.setup("fit")
        metrics, c = fit_and_score(dm, seed=cfg.seed)
        kind = "tfidf" if dm.modality == "text" else "pixels"
        strategy = f"{kind}_logreg"
    summary = {"backbone": kind, "backbone_kind": "baseline", "strategy": strategy, "dataset": cfg.data.name,
               "samples_per_class": cfg.data.samples_per_class, "seed": cfg.seed, "num_classes": dm.num_classes,
               "class_names": dm.class_names, "split": dm.split_info, "chosen_C": c, "best_score": metrics["val/acc"],
               "val": {"val/acc": metrics["val/acc"]}, "test": {k: v for k, v in metrics.items() if k.startswith("test/")},
               "wall_time_s": round(time.time() - start, 2)}
    out_dir.mkdir(parents=True, exist_ok=True)
    Path(RunLayout(str(out_dir)).summary).write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for one sub-folder per (budget, seed)")
    parser.add_argument("--budgets", type=int_list, default=None, help="labels per class, comma-separated "
                        "(default: the config's data.samples_per_class)")
    parser.add_argument("--seeds", type=int_list, default=[0], help="comma-separated (default 0)")
    parser.add_argument("--features", action="store_true", help="logistic regression on the backbone's frozen "
                        "features (the linear probe's cache) instead of pixels / TF-IDF")
    parser.add_argument("overrides", nargs="*", help="train.py overrides for the data (e.g. data=digits)")
    args = parser.parse_args(argv)
    from tl_lightning.errors import TLError

    try:
        for budget in args.budgets or [None]:
            for seed in args.seeds:
                extra = [f"seed={seed}"] + ([f"data.samples_per_class={budget}"] if budget is not None else [])
                s = run_one(args.overrides + extra, args.out / f"spc{budget_name(budget)}_s{seed}", args.features)
                print(f"{s['dataset']} labels/class={s['samples_per_class']} seed={seed}: val {100 * s['val']['val/acc']:.1f} "
                      f"test {100 * s['test']['test/acc']:.1f} (C={s['chosen_C']}, {s['wall_time_s']} s)")
    except TLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def int_list(text: str):
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 5,20,100; got {text!r}") from None


def budget_name(budget) -> str:
    return "default" if budget is None else str(budget)  # None: the config's data.samples_per_class


def run() -> None:
    """Console script ``tl-pixel-baseline``."""
    sys.exit(main())


if __name__ == "__main__":
    run()
