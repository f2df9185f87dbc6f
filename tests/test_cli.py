"""What needs a real process: train.py's error contract, --help, and a multirun sweep.

Every individual mistake is tested in-process (test_config.py, test_data.py, test_backbones.py,
test_strategies_e2e.py); here the two ways an error reaches train.py are checked end to end.
"""

import json
import math

import pytest

from tests.helpers import TINY, run_multirun, run_train

pytestmark = pytest.mark.e2e
STRATEGIES = "linear_probe,progressive,ewc"  # every strategy runs in-process in test_strategies_e2e.py


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.parametrize("args,fragments", [
    (["backbone=resnet51"], ["backbone=resnet51", "did you mean backbone=resnet50?"]),  # Hydra composition
    (["strategy.lr=-1"], ["strategy.lr", "positive"]),  # the config check, before Hydra writes the run dir
    ([], ["already holds a run", "resume=auto"]),  # a valid config: the dir holds a finished run
], ids=["composition", "config_check", "finished_run_dir"])
def test_user_error_is_one_line_exit_2_and_earlier_results_stay(tmp_path, args, fragments):
    earlier = {"summary.json": b'{"earlier": true}', "checkpoints/best.ckpt": b"earlier", "train.log": b"earlier log\n",
               ".hydra/config.yaml": b"earlier: config\n", ".hydra/overrides.yaml": b"- earlier=1\n"}
    for name, content in earlier.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    assert_user_error(run_train(TINY + args, tmp_path), *fragments)
    # the run dir is byte-identical, .hydra/ included, and nothing was added
    assert {n: (tmp_path / n).read_bytes() for n in earlier} == earlier
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(earlier)


def test_error_inside_the_job_is_one_line_exit_2(tmp_path):
    assert_user_error(run_train(TINY + ["data.samples_per_class=1000"], tmp_path / "run"), "samples_per_class=1000",
                      "has only")


def test_help_lists_group_choices(tmp_path):
    proc = run_train(["--help"], tmp_path)
    assert proc.returncode == 0
    for line in ("backbone: checkpoint, efficientnet_b0, efficientnet_lite0, hf, inception_v3, minilm, resnet18, "
                 "resnet50, timm, vgg16, vit_b_16",
                 "strategy: ewc, finetune, ia3, l2sp, linear_probe, lora, lp_ft, progressive, protonet, scratch",
                 "logger: csv, many, none, tensorboard, wandb",
                 "loss: balanced_softmax, ce, class_balanced, focal, group_dro, logit_adjusted"):
        assert line in proc.stdout
    assert "schema" not in proc.stdout.split("== Config ==")[0], "schema entries are not options"


def test_multirun_strategies_in_their_own_dirs_and_wandb_runs_in_one_group(tmp_path):
    """Strategies swept from the command line (timm backbone), each job its own dir and W&B run."""
    sweep = tmp_path / "sweep_abc"
    args = [f"strategy={STRATEGIES}", "backbone=timm", "backbone.name=mobilenetv3_small_050", "backbone.pretrained=false",
            "data=synthetic", "data.per_class=8", "data.image_size=32", "data.batch_size=8", "trainer.max_epochs=4",
            "logger=wandb", "callbacks.rich_progress_bar.enabled=false", f"paths.cache_dir={tmp_path}/cache"]
    proc = run_multirun(args, sweep, env={"WANDB_MODE": ""})
    assert proc.returncode == 0, proc.stderr[-4000:]
    summaries = {json.loads(p.read_text())["strategy"]: (p.parent, json.loads(p.read_text()))
                 for p in sweep.glob("*/summary.json")}
    assert set(summaries) == set(STRATEGIES.split(",")), sorted(p.name for p in sweep.iterdir())
    run_ids = set()
    for name, (job_dir, summary) in summaries.items():
        epochs = 1 if name == "linear_probe" else 4  # the L-BFGS probe: one epoch scores and checkpoints the fit
        assert summary["global_step"] == epochs * math.ceil(summary["split"]["sizes"]["train"] / 8), name
        assert (job_dir / ".hydra" / "overrides.yaml").read_text().count(f"strategy={name}") == 1
        runs = list((job_dir / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs
        run_ids.add(runs[0].name.rsplit("-", 1)[-1])
        assert b"sweep_abc" in next(runs[0].glob("run-*.wandb")).read_bytes(), "group = the sweep's dir name"
    assert len(run_ids) == len(summaries), "each job its own W&B run"
    info = {name: s["strategy_info"] for name, (_, s) in summaries.items()}
    assert info["progressive"]["phase"] == 3  # one more top group every epoch
    assert info["ewc"]["fisher_from"] == "target"
    assert summaries["linear_probe"][1]["feature_cache"] == "miss"  # data.augment=none: features computed once
