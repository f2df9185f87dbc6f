"""strategy=protonet: the episodic sampler's N-way K-shot composition, the nearest-mean head, an end-to-end
run with its few-shot evaluation, and the bad inputs."""

import numpy as np
import pytest
import torch

from tests.helpers import TINY, expect_user_error, run_train, train_inprocess
from tl_lightning.data.episodes import EpisodeSampler
from tl_lightning.strategies.protonet import prototype_head

# synthetic: 4 classes; the target keeps 2 and 3, so 0 and 1 are the source of the episodes
PROTO = TINY + ["data.per_class=40", "strategy=protonet", "data.classes=[2,3]", "data.samples_per_class=3", "strategy.ways=2",
                "strategy.shots=2", "strategy.queries=2", "strategy.episodes_per_epoch=3", "strategy.eval_episodes=20",
                "strategy.eval_queries=2"]


def test_episode_sampler_draws_n_way_k_shot_episodes():
    labels = np.repeat(np.arange(6), 10)
    sampler = EpisodeSampler(labels, ways=3, shots=2, queries=4, episodes=50, seed=0)
    flat = list(sampler)
    assert len(flat) == len(sampler) == 50 * sampler.episode_size  # a DataLoader's batch_size=18 cuts the episodes
    episodes = [flat[i: i + 18] for i in range(0, len(flat), 18)]
    seen_classes = set()
    for ep in episodes:
        assert len(ep) == 3 * (2 + 4) and len(set(ep)) == len(ep)  # support and queries never share a sample
        support = labels[ep[:6]].reshape(3, 2)
        query = labels[ep[6:]].reshape(3, 4)
        assert (support == support[:, :1]).all() and (query == query[:, :1]).all()  # way by way
        assert len(set(support[:, 0])) == 3 and (support[:, 0] == query[:, 0]).all()  # 3 distinct ways, same order
        seen_classes.update(support[:, 0])
    assert seen_classes == set(range(6))
    assert list(sampler) == flat  # the same (seed, epoch): the same episodes (resume)
    sampler.set_epoch(1)
    assert list(sampler) != flat
    other_rank = EpisodeSampler(labels, ways=3, shots=2, queries=4, episodes=50, seed=0, num_replicas=2, rank=1)
    assert list(other_rank) != flat  # each DDP rank draws its own episodes


def test_prototype_head_is_the_nearest_mean_rule():
    features, prototypes = torch.randn(20, 8), torch.randn(5, 8)
    for scale in (1.0, 0.3):  # the learnt metric scale multiplies the negative squared distances
        weight, bias = prototype_head(prototypes, scale)
        linear = torch.softmax(features @ weight.T + bias, -1)
        distance = torch.softmax(-scale * torch.cdist(features, prototypes) ** 2, -1)
        assert torch.allclose(linear, distance, atol=1e-5)


def test_protonet_run_classifies_by_the_nearest_mean_and_scores_episodes(tmp_path):
    from tl_lightning.data import build_datamodule
    from tl_lightning.inference import load
    from tl_lightning.strategies.protonet import embed

    # saliency maps read the target's validation images through the episodes wrapper (it once looked for .datasets
    # on the wrapper and crashed)
    _, summary = train_inprocess(PROTO + ["callbacks.saliency.enabled=true", "callbacks.saliency.per_class=1"],
                                 tmp_path / "run")
    assert summary["diagnostics"]["saliency"] == str(tmp_path / "run" / "saliency.png")
    assert (tmp_path / "run" / "saliency.png").stat().st_size > 0
    assert summary["strategy_info"]["episodes_from"] == "source classes class0, class1"
    fewshot = summary["fewshot"]
    assert (fewshot["episodes"], fewshot["ways"], fewshot["shots"], fewshot["queries"]) == (20, 2, 3, 2)
    for name in ("protonet", "probe", "initial_protonet", "initial_probe"):
        assert 0.0 <= fewshot[name]["mean"] <= 1.0 and fewshot[name]["ci95"] >= 0.0
    # the checkpoint's head is the nearest-mean rule on the labelled budget, with the checkpoint's backbone
    model = load(str(tmp_path / "run" / "checkpoints" / "best.ckpt"))
    from omegaconf import OmegaConf

    data_cfg = OmegaConf.create(model.config["data"])
    dm = build_datamodule(data_cfg, model.preprocessing)
    dm.setup("fit")
    support, labels = embed(model.backbone, dm.plain_loader("train", 16))
    test, _ = embed(model.backbone, dm.plain_loader("test", 16))
    prototypes = torch.stack([support[labels == c].mean(0) for c in range(2)])
    with torch.no_grad():
        logits = model.head(test)
    assert torch.equal(logits.argmax(-1), torch.cdist(test, prototypes).argmin(-1))


def test_protonet_bad_inputs(tmp_path):
    expect_user_error(PROTO + ["strategy.ways=3"], tmp_path / "a", "strategy.ways", "3-way", "has 2 classes")
    expect_user_error(PROTO + ["strategy.eval_ways=3"], tmp_path / "b", "strategy.eval_ways", "target has 2 classes")
    expect_user_error(PROTO + ["strategy.source_classes=[1,2]"], tmp_path / "c", "[2]", "also target classes")
    expect_user_error(PROTO + ["data.classes=null", "data.samples_per_class=1"], tmp_path / "d",
                      "no source classes", "data.classes=[5,6,7,8,9]")
    expect_user_error(PROTO + ["strategy.ways=1"], tmp_path / "g", "strategy.ways", "at least 2")
    expect_user_error(PROTO + ["strategy.queries=0"], tmp_path / "h", "strategy.queries", "positive")
    expect_user_error(PROTO + ["strategy.shots=40"], tmp_path / "e", "40 shots")
    expect_user_error(PROTO + ["data.samples_per_class=8"], tmp_path / "f", "strategy.eval_episodes", "8 shots")


@pytest.mark.integration
@pytest.mark.xdist_group("ddp")
def test_protonet_under_ddp_ranks_draw_their_own_episodes_and_stay_identical(tmp_path):
    """2 gloo processes: the episode sampler stays in place (Lightning does not swap it for its own), each rank
    trains on its own episodes, and weights (the metric scale included) stay identical on both ranks."""
    seen = (f"+callbacks.extra.seen={{_target_: tests.ddp_probe.SeenBatches, key: index, "
            f"path: '{tmp_path}/seen/rank{{rank}}.txt'}}")
    digest = f"+callbacks.extra.digest={{_target_: tests.ddp_probe.WeightDigest, path: {tmp_path / 'dg'}}}"
    proc = run_train(PROTO + ["trainer=ddp_cpu", seen, digest], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [(tmp_path / "dg" / f"rank{r}.sha256").read_text().splitlines() for r in (0, 1)]
    assert ranks[0] == ranks[1] and "world=2 step=6" in ranks[0][-1]  # 3 episodes an epoch on each rank, 2 epochs
    batches = [(tmp_path / "seen" / f"rank{r}.txt").read_text().splitlines() for r in (0, 1)]
    assert len(batches[0]) == 2 and batches[0] != batches[1]
    assert all(len(line.split()) == 3 * 2 * (2 + 2) for line in batches[0])  # 3 episodes of 2 ways x (2 + 2)
