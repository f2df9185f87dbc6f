#!/usr/bin/env bash
# The validation sweep that chose the strategies' defaults (docs/defaults_sweep.md). Validation only:
# every job runs with test=false, and the reports rank by best_score (the best val/acc of the run, the
# value its best checkpoint was chosen by). EfficientNet-Lite0 (embedded ImageNet weights), 20 labels per
# class, 10 epochs unless a line varies it, on Fashion-MNIST (64 px, 100 val images per class) and on
# scikit-learn's digits (32 px). About 2.5 hours on 2 CPU cores (run as two such scripts side by side
# with OMP_NUM_THREADS=1 it took about 1 hour of wall time).
#
#   bash scripts/sweep_defaults.sh [out_dir]          # default out_dir: logs/sweep_defaults
#
# The grid ran with the defaults of that time spelled out on each line (head lr = strategy.lr, backbone lr =
# strategy.lr x strategy.backbone_lr_mult), so it reproduces whatever the YAML defaults are now.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-logs/sweep_defaults}
PY=${PYTHON:-.venv/bin/python}
COMMON="test=false logger=csv callbacks.rich_progress_bar.enabled=false callbacks.confusion_matrix.enabled=false"
FM="data=fashion_mnist data.samples_per_class=20 data.eval_per_class=100"
DIG="data=digits data.samples_per_class=20"

for DATA in fm digits; do
  if [ $DATA = fm ]; then D="$FM data.image_size=64"; else D="$DIG"; fi
  # stage 1, seed 0: head lr x backbone lr multiplier x BatchNorm policy; probe lr; scratch lr; LP-FT's phases
  $PY train.py -m strategy=finetune strategy.lr=1e-3,3e-3 strategy.backbone_lr_mult=0.1,0.3 \
    strategy.bn=train,freeze_stats seed=0 $D $COMMON hydra.sweep.dir=$OUT/$DATA/finetune
  $PY train.py -m strategy=linear_probe strategy.lr=1e-3,3e-3,1e-2 data.augment=none seed=0,1,2 $D $COMMON \
    hydra.sweep.dir=$OUT/$DATA/linear_probe
  $PY train.py -m strategy=scratch strategy.lr=1e-3,3e-3 strategy.bn=train seed=0 $D $COMMON hydra.sweep.dir=$OUT/$DATA/scratch
  $PY train.py -m strategy=lp_ft strategy.phase_schedule=restart strategy.lr=1e-2 strategy.lp_epochs=3 \
    strategy.ft_lr=1e-4,3e-4 strategy.ft_head_lr=null,1e-3 strategy.bn=train,freeze_stats seed=0 $D $COMMON \
    hydra.sweep.dir=$OUT/$DATA/lp_ft
  $PY train.py -m strategy=lp_ft strategy.bn=freeze_stats strategy.phase_schedule=restart strategy.lr=1e-2 \
    strategy.lp_epochs=2 strategy.ft_lr=3e-4 strategy.ft_head_lr=3e-3 seed=0 $D $COMMON hydra.sweep.dir=$OUT/$DATA/lp_ft_short
  $PY train.py -m strategy=progressive strategy.bn=freeze_stats strategy.lr=3e-3 strategy.backbone_lr_mult=0.1 \
    strategy.layer_decay=0.385,1.0 strategy.phase_schedule=global seed=0 $D $COMMON hydra.sweep.dir=$OUT/$DATA/progressive
done

# stage 2, Fashion-MNIST: more seeds for the two best fine-tuning points, epochs, image size, LP-FT's schedule
FT="strategy=finetune strategy.bn=freeze_stats"
$PY train.py -m $FT strategy.lr=3e-3 strategy.backbone_lr_mult=0.1 seed=1,2 $FM data.image_size=64 $COMMON \
  hydra.sweep.dir=$OUT/fm2/finetune_seeds
$PY train.py -m $FT strategy.lr=1e-3 strategy.backbone_lr_mult=0.3 seed=1,2 $FM data.image_size=64 $COMMON \
  hydra.sweep.dir=$OUT/fm2/finetune_seeds_b
$PY train.py -m $FT strategy.lr=3e-3 strategy.backbone_lr_mult=0.1 trainer.max_epochs=20 seed=0 $FM data.image_size=64 \
  $COMMON hydra.sweep.dir=$OUT/fm2/finetune_e20
$PY train.py -m $FT strategy.lr=3e-3 strategy.backbone_lr_mult=0.1 seed=0 $FM data.image_size=96 $COMMON \
  hydra.sweep.dir=$OUT/fm2/finetune_96
$PY train.py -m strategy=linear_probe strategy.lr=3e-3 data.augment=none seed=0 $FM data.image_size=96 $COMMON \
  hydra.sweep.dir=$OUT/fm2/linear_probe_96
$PY train.py -m strategy=linear_probe strategy.lr=1e-3 data.augment=basic,none trainer.max_epochs=20 seed=0 $FM \
  data.image_size=64 $COMMON hydra.sweep.dir=$OUT/fm2/linear_probe_e20
$PY train.py -m strategy=lp_ft strategy.bn=freeze_stats strategy.phase_schedule=restart,global strategy.lr=1e-3 \
  strategy.lp_epochs=3 strategy.ft_lr=3e-4,1e-3 strategy.ft_head_lr=3e-3 trainer.max_epochs=20 seed=0 $FM data.image_size=64 \
  $COMMON hydra.sweep.dir=$OUT/fm2/lp_ft_e20

KEYS="--by strategy.lr --by strategy.backbone_lr_mult --by strategy.bn --by strategy.layer_decay --by strategy.lp_epochs
  --by strategy.ft_lr --by strategy.ft_head_lr --by strategy.phase_schedule --by trainer.max_epochs --by data.image_size
  --by data.augment"
$PY scripts/report.py $OUT --metric best_score $KEYS   # $OUT/report.md: one row per dataset and setting
