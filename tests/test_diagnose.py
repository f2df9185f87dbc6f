"""Diagnostics before training (issue: diagnostics): LogME / LEEP / NCE, the domain gap, and the diagnose app."""

import json

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from tests.helpers import tiny, train_inprocess
from tests.test_deploy import tool_config
from tl_lightning.diagnose.gap import domain_gap, frechet_distance, mmd2_permutation
from tl_lightning.diagnose.transferability import _max_log_evidence, leep, log_evidence, logme, nce
from tl_lightning.errors import TLError


def svd_terms(f, y):
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    z2 = (u.T @ y) ** 2
    return s ** 2, z2, max(float(y @ y - z2.sum()), 0.0)


@pytest.mark.parametrize("n,d", [(40, 12), (10, 30)])  # more samples than features, and fewer
def test_log_evidence_is_the_gaussian_marginal_likelihood_and_logme_maximises_it(n, d):
    rng = np.random.default_rng(n)
    f, y = rng.normal(size=(n, d)), (rng.random(n) > 0.5).astype(float)
    sigma, z2, outside = svd_terms(f, y)
    for alpha, beta in ((0.5, 2.0), (3.0, 0.7)):  # y ~ N(0, I / beta + F F^T / alpha)
        direct = multivariate_normal(np.zeros(n), np.eye(n) / beta + f @ f.T / alpha).logpdf(y)
        assert log_evidence(alpha, beta, sigma, z2, outside, n, d) == pytest.approx(direct, rel=1e-9)
    u = np.linalg.svd(f, full_matrices=False)[0]
    fixed_point = _max_log_evidence(u, sigma, y, n, d, max_iter=500, tol=1e-10)
    best = minimize(lambda p: -log_evidence(np.exp(p[0]), np.exp(p[1]), sigma, z2, outside, n, d), x0=[0.0, 0.0],
                    method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000})
    assert fixed_point == pytest.approx(-best.fun, abs=1e-6)


def test_logme_prefers_features_that_carry_the_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 90)
    informative = np.hstack([np.eye(3)[labels] * 3 + rng.normal(size=(90, 3)) * 0.5, rng.normal(size=(90, 5))])
    assert logme(informative, labels) > logme(rng.normal(size=(90, 8)), labels) + 0.5


def test_leep_and_nce_by_hand():
    theta = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])  # source classifier on 4 target samples
    labels = np.array([0, 1, 0, 1])
    joint = np.array([[0.9 + 0.6, 0.1 + 0.4], [0.2 + 0.3, 0.8 + 0.7]]) / 4  # P(y, z): rows y, columns z
    cond = joint / joint.sum(axis=0)
    expected = np.mean([np.log(theta[i] @ cond[labels[i]]) for i in range(4)])
    assert leep(theta, labels) == pytest.approx(expected)
    # hard source labels 0, 1, 0, 1 match the targets exactly: H(Y | Z) = 0; independent labels: -log 2
    assert nce(theta.argmax(axis=1), labels) == pytest.approx(0.0)
    assert nce(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(-np.log(2))


def test_mmd_frechet_and_domain_classifier_controls():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(120, 6)), rng.normal(size=(120, 6))
    same = domain_gap(a, b, permutations=200)
    shifted = domain_gap(a, rng.normal(size=(120, 6)) + 0.8, permutations=200)
    assert same["verdict"] == "close" and same["domain_accuracy"] < 0.6
    # under the null the p-value is uniform: 20 pairs from one distribution, about one below 0.05
    nulls = [mmd2_permutation(rng.normal(size=(60, 6)), rng.normal(size=(60, 6)), 100, seed=k)["p_value"]
             for k in range(20)]
    assert sum(p < 0.05 for p in nulls) <= 3 and np.mean(nulls) > 0.3
    assert shifted["p_value"] < 0.01 and shifted["verdict"] in ("moderate", "far")
    assert shifted["frechet"] > same["frechet"] and shifted["domain_accuracy"] > same["domain_accuracy"]
    # unbiased MMD^2 by hand on 2 + 2 points in 1-D (bandwidth: the median pairwise distance of 1, 1, 1, 2, 2, 3)
    x, y = np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]])
    k = lambda p, q: np.exp(-((p - q) ** 2) / (2 * 1.5 ** 2))  # noqa: E731
    by_hand = k(0, 1) + k(2, 3) - 2 * np.mean([k(0, 2), k(0, 3), k(1, 2), k(1, 3)])
    out = mmd2_permutation(x, y, permutations=10)
    assert out["bandwidth"] == pytest.approx(1.5) and out["mmd2"] == pytest.approx(by_hand)
    # two 1-D Gaussians N(0, 1) and N(3, 4): Frechet = 3^2 + 1 + 4 - 2 * sqrt(1 * 4) = 10
    big = frechet_distance(rng.normal(0, 1, (20000, 1)), rng.normal(3, 2, (20000, 1)))
    assert big["frechet"] == pytest.approx(10.0, rel=0.05)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("diagnose") / "run"
    _, summary = train_inprocess(tiny() + ["trainer.max_epochs=1"], run_dir)
    return summary["best_checkpoint"]


DATA = ["data=synthetic", "data.per_class=12", "data.image_size=32", "backbone=resnet18", "backbone.pretrained=false"]


def diagnose(overrides, output_dir):
    from tl_lightning.diagnose.run import run

    cfg = tool_config("diagnose", [*DATA, *overrides], output_dir)
    return run(cfg, str(output_dir), "resnet18")


def test_rank_scores_candidates_with_a_random_control_and_leep_for_a_checkpoint(source_run, tmp_path):
    result = diagnose(["command=rank", f"backbones=[{source_run}]"], tmp_path)
    rows = {r["backbone"]: r for r in result["ranking"]}
    assert set(rows) == {source_run, f"random:{source_run}"}  # the control: its architecture, random weights
    assert "leep" in rows[source_run] and "nce" in rows[source_run] and "leep" not in rows[f"random:{source_run}"]
    assert rows[source_run]["logme"] != rows[f"random:{source_run}"]["logme"]
    assert [r["logme"] for r in result["ranking"]] == sorted((r["logme"] for r in result["ranking"]), reverse=True)
    assert all(r["samples"] == 30 and r["feature_dim"] == 512 for r in result["ranking"])
    assert json.loads((tmp_path / "diagnose.json").read_text())["ranking"] == result["ranking"]
    assert "| 1 |" in (tmp_path / "diagnose.md").read_text()
    own = diagnose(["command=rank"], tmp_path / "own")  # no list: the backbone group's own (random) config
    assert [r["backbone"] for r in own["ranking"]] == ["resnet18"] and own["ranking"][0]["pretrained"] is False
    given = diagnose(["command=rank", "backbones=[random:resnet18,random:torchvision:resnet18]"], tmp_path / "given")
    assert sorted(r["backbone"] for r in given["ranking"]) == ["random:resnet18", "random:torchvision:resnet18"]


def test_gap_to_the_checkpoints_source_data_and_between_halves(source_run, tmp_path):
    same = diagnose(["command=gap", "backbone=checkpoint", f"backbone.path={source_run}", "backbone.pretrained=true",
                     "reference.kind=source",
                     "permutations=100"], tmp_path / "source")
    assert same["target"] == "synthetic train" and same["reference"] == "source synthetic test"
    halves = diagnose(["command=gap", "reference.kind=halves", "permutations=100"], tmp_path / "halves")
    assert halves["samples"] == [15, 15] and halves["p_value"] > 0.05
    far = diagnose(["command=gap", "reference.data=digits", "permutations=100"], tmp_path / "digits")
    assert far["p_value"] < 0.05 and far["reference"] == "digits test"


@pytest.mark.parametrize("overrides,message", [
    (["command=rank", "backbones=[nosuchnet]"], "unknown backbone 'nosuchnet' (backbone); valid: checkpoint,"),
    (["command=rank", "backbones=[onnx:resnet]"], "unknown kind 'onnx'; valid: timm, torchvision, hf"),
    (["command=rank", "backbones=[random:/tmp/x/best.ckpt]"], "a checkpoint's weights are the point"),
    (["command=rank", "backbones=[timm:convnext_tiny]"], "convnext_tiny"),  # not cached here: offline, one line
    (["command=rank", "split=holdout"], "'split': 'holdout' is not valid; valid: train, val, test"),
    (["command=sort"], "'command': 'sort' is not valid; valid: rank, gap"),
    (["command=gap"], "reference.kind=data needs reference.data=<a data option, e.g. digits, or one with overrides"),
    (["command=gap", "reference.data={root: /x}"], "'reference.data': a data option or {name: <option>, <overrides>}"),
    (["command=gap", "reference.kind=source"], "reference.kind=source needs backbone=checkpoint"),
    (["command=gap", "reference.kind=halves", "data.per_class=6"], "gap needs at least 10 samples a side;"),
    (["command=gap", "reference.data=nosuchdata"], "unknown data 'nosuchdata'"),
    (["command=gap", "permutations=0"], "'permutations': must be a positive"),
])
def test_diagnose_mistakes_are_one_line(tmp_path, overrides, message):
    with pytest.raises(TLError) as info:
        diagnose(overrides, tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_the_first_word_is_the_command():
    from tl_lightning.cli.diagnose import command_word

    assert command_word(["gap", "reference.data=digits"]) == ["command=gap", "reference.data=digits"]
    assert command_word(["command=rank"]) == ["command=rank"] and command_word([]) == []


def test_gap_between_two_folders_of_ones_own(tmp_path):
    """reference.data takes an option with overrides: site A's folder against site B's (brighter) images."""
    from tests.helpers import write_image_tree

    site_a = write_image_tree(tmp_path / "a", per_class=20, size=16, seed=0)
    site_b = write_image_tree(tmp_path / "b", per_class=20, size=16, seed=1)
    from tl_lightning.diagnose.run import run

    args = ["command=gap", "backbone=resnet18", "backbone.pretrained=false", "data=image_folder", f"data.root={site_a}",
            "data.image_size=32", f"reference.data={{name: image_folder, root: {site_b}}}", "reference.split=train",
            "permutations=50"]
    result = run(tool_config("diagnose", args, tmp_path / "run"), str(tmp_path / "run"), "resnet18")
    assert result["reference"] == "image_folder train" and result["samples"][1] >= 10
    assert 0.0 <= result["proxy_a_distance"] <= 2.0
