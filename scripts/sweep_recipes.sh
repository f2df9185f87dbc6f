#!/usr/bin/env bash
# The measurements of docs/recipes.md: the L-BFGS linear probe against scikit-learn's logistic regression on the
# same cached features and against the SGD probe, LP-FT against fine-tuning, and each training recipe's effect on
# fine-tuning (chosen on validation, reported on test). Three seeds, the same splits and test sets for every row.
# Two lanes, meant to run side by side with one thread each (about 40 min of wall time on 2 CPU cores), then a
# third (about 25 min):
#
#   OMP_NUM_THREADS=1 bash scripts/sweep_recipes.sh probe   [out_dir]   # probes, sklearn, lp_ft vs finetune, 100/class
#   OMP_NUM_THREADS=1 bash scripts/sweep_recipes.sh recipes [out_dir]   # finetune + one recipe each, then the best mix
#   OMP_NUM_THREADS=1 bash scripts/sweep_recipes.sh extra   [out_dir]   # TTA, two recipes at 100/class, 5/class, k-fold
#   python scripts/report.py <out_dir>/<part>                            # one table per part
set -euo pipefail
cd "$(dirname "$0")/.."
LANE=${1:?probe or recipes}
OUT=${2:-logs/recipes}
PY=${PYTHON:-.venv/bin/python}
COMMON="logger=csv callbacks.rich_progress_bar.enabled=false callbacks.confusion_matrix.enabled=false"
SEEDS=0,1,2

if [ "$LANE" = probe ]; then
  # the default job (Lite0, Fashion-MNIST, 20 labels a class): the new probe, scikit-learn on its very cache, the
  # old probe (SGD at lr 3e-3 over 10 epochs with the basic augmentation, the default before)
  $PY train.py -m strategy=linear_probe seed=$SEEDS $COMMON hydra.sweep.dir=$OUT/default/lbfgs
  $PY scripts/pixel_baseline.py --features --out $OUT/default/sklearn --seeds $SEEDS strategy=linear_probe
  $PY train.py -m strategy=linear_probe strategy.probe=sgd strategy.augment=basic seed=$SEEDS $COMMON \
    hydra.sweep.dir=$OUT/default/sgd
  # fortunes (MiniLM) at 10 and 50 labels a class, 5 epochs as in docs/results.md's text table
  TXT="data=fortunes trainer.max_epochs=5"
  $PY train.py -m strategy=linear_probe $TXT data.samples_per_class=10,50 seed=$SEEDS $COMMON \
    hydra.sweep.dir=$OUT/fortunes/lbfgs
  $PY scripts/pixel_baseline.py --features --out $OUT/fortunes/sklearn --budgets 10,50 --seeds $SEEDS \
    strategy=linear_probe $TXT
  $PY train.py -m strategy=linear_probe strategy.probe=sgd $TXT data.samples_per_class=10,50 seed=$SEEDS $COMMON \
    hydra.sweep.dir=$OUT/fortunes/sgd
  # LP-FT (its probe now the L-BFGS fit) against fine-tuning; temperature scaling on both (argmax unchanged)
  $PY train.py -m strategy=finetune,lp_ft seed=$SEEDS callbacks.temperature_scaling.enabled=true $COMMON \
    hydra.sweep.dir=$OUT/default/ft
  $PY train.py -m strategy=lp_ft strategy.probe=sgd seed=$SEEDS $COMMON hydra.sweep.dir=$OUT/default/lp_ft_sgd
  # 100 labels a class: the probe, scikit-learn, pixels; fine-tuning as the recipes lane leaves it
  $PY train.py -m strategy=linear_probe data.samples_per_class=100 seed=$SEEDS $COMMON hydra.sweep.dir=$OUT/100/lbfgs
  $PY scripts/pixel_baseline.py --features --out $OUT/100/sklearn --budgets 100 --seeds $SEEDS strategy=linear_probe
  $PY scripts/pixel_baseline.py --out $OUT/100/pixels --budgets 100 --seeds $SEEDS
  $PY train.py -m strategy=finetune data.samples_per_class=100 seed=$SEEDS $COMMON hydra.sweep.dir=$OUT/100/finetune
  $PY train.py -m strategy=lp_ft data.samples_per_class=100 seed=$SEEDS $COMMON hydra.sweep.dir=$OUT/100/lp_ft
elif [ "$LANE" = recipes ]; then
  # each recipe alone on fine-tuning at 20 labels a class (the baseline is the probe lane's default/ft finetune rows)
  R=$OUT/recipes20
  $PY train.py -m seed=$SEEDS callbacks.mixup.enabled=true callbacks.mixup.mixup_alpha=0.2 $COMMON hydra.sweep.dir=$R/mixup
  $PY train.py -m seed=$SEEDS callbacks.mixup.enabled=true callbacks.mixup.mixup_alpha=0 callbacks.mixup.cutmix_alpha=1.0 \
    $COMMON hydra.sweep.dir=$R/cutmix
  $PY train.py -m seed=$SEEDS data.augment=randaugment,autoaugment $COMMON hydra.sweep.dir=$R/policy
  $PY train.py -m seed=$SEEDS backbone.drop_path_rate=0.1 $COMMON hydra.sweep.dir=$R/drop_path
  $PY train.py -m seed=$SEEDS callbacks.weight_averaging.enabled=true callbacks.weight_averaging.kind=ema,swa $COMMON \
    hydra.sweep.dir=$R/averaging
  # the best combination: every recipe whose mean validation accuracy beat the baseline's (validation only); the
  # baseline is the probe lane's fine-tuning: wait for its three runs
  until [ "$(ls $OUT/default/ft/*/summary.json 2>/dev/null | wc -l)" -ge 6 ]; do sleep 30; done
  MIX=$($PY - "$OUT" <<'EOF'
import statistics, sys
from pathlib import Path
from tl_lightning.cli.report import load_summaries
out = Path(sys.argv[1])
def val(folder, **match):  # mean best_score (best val/acc) of the runs whose config has the given values
    rows = load_summaries(out / folder, by=list(match))
    scores = [r["best_score"] for r in rows if all(r["by"][k] == v for k, v in match.items())]
    return statistics.mean(scores) if len(scores) == 3 else float("-inf")
base = val("default/ft", **{"strategy.name": "finetune"})
picks = {"callbacks.mixup.enabled=true callbacks.mixup.mixup_alpha=0.2": val("recipes20/mixup"),
         "callbacks.mixup.enabled=true callbacks.mixup.mixup_alpha=0 callbacks.mixup.cutmix_alpha=1.0": val("recipes20/cutmix"),
         "data.augment=randaugment": val("recipes20/policy", **{"data.augment": "randaugment"}),
         "data.augment=autoaugment": val("recipes20/policy", **{"data.augment": "autoaugment"}),
         "backbone.drop_path_rate=0.1": val("recipes20/drop_path"),
         "callbacks.weight_averaging.enabled=true callbacks.weight_averaging.kind=ema":
             val("recipes20/averaging", **{"callbacks.weight_averaging.kind": "ema"}),
         "callbacks.weight_averaging.enabled=true callbacks.weight_averaging.kind=swa":
             val("recipes20/averaging", **{"callbacks.weight_averaging.kind": "swa"})}
print(f"baseline val {base:.4f}; " + "; ".join(f"{k}: {v:.4f}" for k, v in picks.items()), file=sys.stderr)
chosen, keys = [], set()
for k, v in sorted(picks.items(), key=lambda kv: -kv[1]):  # at most one mixing and one policy and one averaging
    head = k.split("=")[0] if "augment" in k or "weight_averaging" in k or "mixup" in k else k
    if v > base and head not in keys:
        chosen.append(k)
        keys.add(head)
print(" ".join(chosen))
EOF
)
  echo "best combination on validation: ${MIX:-none}" | tee $OUT/best_mix.txt
  if [ -n "$MIX" ]; then
    $PY train.py -m seed=$SEEDS $MIX $COMMON hydra.sweep.dir=$R/best_mix
    $PY train.py -m seed=$SEEDS data.samples_per_class=100 $MIX $COMMON hydra.sweep.dir=$OUT/100/best_mix
  fi
elif [ "$LANE" = extra ]; then
  # after the other two: test-time augmentation of the fine-tuned runs (val to choose, test to report), two recipes
  # at 100 labels a class (the two nearest the baseline on validation at 20), the probe at 5 a class, the probe's
  # calibration, and k-fold
  for run in $OUT/default/ft/*/; do
    [ "$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['strategy'])" $run/summary.json)" = finetune ] || continue
    for split in val test; do
      for tta in none flip crops; do
        $PY -m tl_lightning.eval ckpt_path=$run/checkpoints/best.ckpt split=$split tta=$tta logger=csv \
          progress_bar=false confusion_matrix=false hydra.run.dir=$OUT/tta_$split/$(basename $run)_$tta
      done
    done
  done
  R=$OUT/recipes100
  $PY train.py -m seed=$SEEDS data.samples_per_class=100 callbacks.weight_averaging.enabled=true $COMMON \
    hydra.sweep.dir=$R/ema
  $PY train.py -m seed=$SEEDS data.samples_per_class=100 data.augment=autoaugment $COMMON hydra.sweep.dir=$R/autoaugment
  $PY train.py -m strategy=linear_probe data.samples_per_class=5 seed=$SEEDS $COMMON hydra.sweep.dir=$OUT/5/lbfgs
  $PY scripts/pixel_baseline.py --features --out $OUT/5/sklearn --budgets 5 --seeds $SEEDS strategy=linear_probe
  $PY train.py -m strategy=linear_probe seed=$SEEDS callbacks.temperature_scaling.enabled=true $COMMON \
    hydra.sweep.dir=$OUT/calib/linear_probe
  $PY train.py -m strategy=linear_probe data.folds=5 data.fold=0,1,2,3,4 $COMMON hydra.sweep.dir=$OUT/kfold
  $PY scripts/report.py $OUT/kfold
else
  echo "usage: bash scripts/sweep_recipes.sh probe|recipes|extra [out_dir]" >&2
  exit 2
fi
