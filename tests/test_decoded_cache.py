"""data.cache: decoded once, same samples and order as without it, bit-exact evaluation, rebuilt when stale or damaged,
one build under concurrent writers, auto's choice, bad options."""

import logging
import multiprocessing
import os
import pickle
import time

import numpy as np
import pytest
import torch

from tests.helpers import TINY, one_line, train_inprocess, write_image_tree
from tests.test_data import data_cfg
from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec
from tl_lightning.config.schema import SyntheticDataConf
from tl_lightning.context import DataPaths
from tl_lightning.data import build_datamodule
from tl_lightning.data.decoded_cache import load_or_build
from tl_lightning.errors import ConfigError

SPEC = InputSpec(size=16, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))


def folder_dm(root, cache, cache_dir=None, augment="basic", **kw):
    cfg = data_cfg("image_folder", root=root, val_fraction=0.25, test_fraction=0.25, cache=cache, augment=augment,
                   batch_size=4, **kw)
    dm = build_datamodule(cfg, ImagePreprocessing(SPEC), DataPaths("data", cache_dir))
    dm.setup("fit")
    return dm


@pytest.fixture
def tree(tmp_path):
    return write_image_tree(tmp_path / "imgs", per_class=12, size=20)


def epochs(loader, n=2):
    out = []
    for epoch in range(n):
        loader.sampler.set_epoch(epoch)
        out.append([b["index"].tolist() for b in loader])
    return out


def test_same_samples_order_and_bit_exact_evaluation(tree, tmp_path):
    plain = folder_dm(tree, "off")
    cached = folder_dm(tree, "disk", str(tmp_path / "cache"))
    assert cached.split_info["decoded_cache"] == {"mode": "disk", "sides": {"train": 18, "val": 16, "test": 16}}
    assert cached.split_info["fingerprint"] == plain.split_info["fingerprint"]
    assert epochs(cached.labelled_train_loader()) == epochs(plain.labelled_train_loader())
    for split in ("val", "test"):
        for a, b in zip(plain._loader(split, False), cached._loader(split, False)):
            assert b["inputs"].dtype == torch.uint8
            b = cached.on_after_batch_transfer(b, 0)
            assert torch.equal(a["inputs"], b["inputs"]) and torch.equal(a["target"], b["target"])
    train = cached.on_after_batch_transfer(next(iter(cached.labelled_train_loader())), 0)["inputs"]
    assert train.shape == (4, 3, 16, 16) and train.dtype == torch.float32
    # the training batch is normalised like the per-sample transform's: same range, not raw pixels
    assert -3 < float(train.min()) < float(train.max()) < 3


def test_augment_none_trains_bit_exact_and_other_policies_keep_per_sample_transforms(tree):
    plain, cached = folder_dm(tree, "off", augment="none"), folder_dm(tree, "memory", augment="none")
    assert cached.split_info["decoded_cache"]["sides"]["train"] == 16
    for a, b in zip(plain.labelled_train_loader(), cached.labelled_train_loader()):
        assert torch.equal(a["inputs"], cached.on_after_batch_transfer(b, 0)["inputs"])
    strong = folder_dm(tree, "memory", augment="strong")
    x = next(iter(strong.labelled_train_loader()))["inputs"]
    assert x.dtype == torch.float32 and x.shape == (4, 3, 16, 16)  # per sample, from the cached 18 px images


def test_corrupt_stale_and_pickled_files_are_rebuilt_with_a_warning(tree, tmp_path, caplog):
    cache_dir = str(tmp_path / "cache")
    first = folder_dm(tree, "disk", cache_dir)
    folder = os.path.join(cache_dir, "decoded")
    train = next(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("image_folder-train")
                 and f.endswith(".npy"))
    expected = np.array(first.loader_datasets["train"].source.images)

    def reload(reason):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tl_lightning.data.decoded_cache"):
            dm = folder_dm(tree, "disk", cache_dir)
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and reason in warnings[0] and "rebuilding" in warnings[0], warnings
        assert "\n" not in warnings[0]
        assert np.array_equal(np.array(dm.loader_datasets["train"].source.images), expected)

    raw = bytearray(open(train, "rb").read())
    raw[-5] ^= 0xFF  # one flipped byte in the pixels
    open(train, "wb").write(bytes(raw))
    reload("do not match their checksum")
    open(train, "r+b").truncate(100)  # cut short
    reload("do not match their checksum")
    with open(train, "wb") as fh:  # a pickle in its place: never unpickled
        pickle.dump({"x": 1}, fh)
    reload("do not match their checksum")
    open(train[:-4] + ".json", "w").write("{not json")
    reload("unreadable")
    # a source image changed after the cache was built: stale
    some = os.path.join(tree, "cat", "0.png")
    os.utime(some, ns=(time.time_ns(), time.time_ns() + 10**9))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tl_lightning.data.decoded_cache"):
        folder_dm(tree, "disk", cache_dir)
    assert any("have changed since" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tl_lightning.data.decoded_cache"):
        folder_dm(tree, "disk", cache_dir)  # now valid again: no warning
    assert not caplog.records


def _build_in_child(path, marker_dir, out):
    def build():
        open(os.path.join(marker_dir, f"built-{os.getpid()}"), "w").close()
        time.sleep(0.5)  # long enough for the other writer to arrive while this one holds the lock
        return np.arange(3 * 8 * 8, dtype=np.uint8).reshape(1, 3, 8, 8)

    images = load_or_build(path, {"k": 1}, "stamp", build)
    np.save(out, np.array(images))


def test_concurrent_writers_build_once_and_both_read_it(tmp_path):
    path = str(tmp_path / "decoded" / "x.npy")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_build_in_child, args=(path, str(tmp_path), str(tmp_path / f"out{k}.npy")))
             for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len([f for f in os.listdir(tmp_path) if f.startswith("built-")]) == 1
    a, b = np.load(tmp_path / "out0.npy"), np.load(tmp_path / "out1.npy")
    assert np.array_equal(a, b) and a.shape == (1, 3, 8, 8)
    assert not [f for f in os.listdir(tmp_path / "decoded") if ".tmp-" in f]


def test_auto_decides_by_source_and_size(tree, tmp_path):
    assert folder_dm(tree, "auto", str(tmp_path / "c")).split_info["decoded_cache"]["mode"] == "disk"
    assert folder_dm(tree, "auto").split_info["decoded_cache"]["mode"] == "memory"  # no cache dir
    assert "decoded_cache" not in folder_dm(tree, "auto", cache_max_gb=1e-9).split_info  # too large for the cap
    arrays = build_datamodule(data_cfg("synthetic", SyntheticDataConf, per_class=12, cache="auto"), ImagePreprocessing(SPEC),
                              DataPaths("data", str(tmp_path / "c")))
    arrays.setup("fit")
    assert "decoded_cache" not in arrays.split_info and not arrays.loader_datasets  # arrays in memory: off
    with pytest.raises(ConfigError) as info:
        folder_dm(tree, "disk", None)
    one_line(info.value, "data.cache=disk needs paths.cache_dir")


@pytest.mark.parametrize("override, fragment", [
    ("data.cache=always", "config key 'data.cache': 'always' is not valid; valid: auto, off, memory, disk"),
    ("data.cache_max_gb=0", "config key 'data.cache_max_gb': must be a positive number, got 0"),
])
def test_bad_cache_options_are_one_line(compose, override, fragment):
    from tl_lightning.config.validate import validate_config as validate

    with pytest.raises(ConfigError) as info:
        validate(compose(["data=image_folder", "data.root=/tmp", override]))
    one_line(info.value, fragment)


def test_cached_runs_match_uncached_and_resume_exactly(tree, tmp_path):
    """Through Lightning: the datamodule's hook turns the cached batches into model input in fit, validation, test
    and temperature scaling. With augment=none a cached run's results are the uncached run's; with basic (crops and
    flips on whole batches) a run stopped after 2 epochs and resumed ends with the uninterrupted run's weights."""
    args = [a for a in TINY if not a.startswith(("data=", "data.per_class", "trainer.max_epochs"))] + [
        "data=image_folder", f"data.root={tree}", "data.val_fraction=0.25", "data.test_fraction=0.25",
        f"paths.cache_dir={tmp_path / 'cache'}", "trainer.deterministic=true", "scheduler.name=none",
        "callbacks.early_stopping.enabled=false", "trainer.max_epochs=2"]
    none = args + ["data.augment=none"]
    metrics_off, _ = train_inprocess(none + ["data.cache=off"], tmp_path / "off")
    metrics_on, summary = train_inprocess(none + ["data.cache=disk"], tmp_path / "on")
    assert summary["split"]["decoded_cache"]["mode"] == "disk"
    for key in ("test/acc", "test/loss"):
        assert metrics_on[key] == pytest.approx(metrics_off[key], abs=1e-6), key
    basic = args + ["data.augment=basic", "data.cache=disk"]
    _, full = train_inprocess(basic + ["trainer.max_epochs=3"], tmp_path / "full")
    assert full["split"]["decoded_cache"]["sides"]["train"] == round(32 * 8 / 7)
    train_inprocess(basic, tmp_path / "cut")
    _, resumed = train_inprocess(basic + ["trainer.max_epochs=3", "resume=auto"], tmp_path / "cut")
    assert resumed["started_at"]["epoch"] == 2 and resumed["global_step"] == full["global_step"]
    assert resumed["split"]["fingerprint"] == full["split"]["fingerprint"]
    a, b = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in
            (tmp_path / "full", tmp_path / "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
