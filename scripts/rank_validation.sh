#!/usr/bin/env bash
# Does LogME rank backbones as training does? For Fashion-MNIST and digits (20 labels per class), four
# backbones: EfficientNet-Lite0 with ImageNet weights, Lite0 with random weights, ResNet-18 with random
# weights, and a Lite0 fine-tuned on the other dataset (a harness checkpoint); each scored by
# `diagnose rank` and trained with linear_probe and finetune (seed 0); then Kendall's tau.
#     bash scripts/rank_validation.sh [out dir, default logs/rank_validation]     (~16 min on 2 CPU cores)
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-logs/rank_validation}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # two lanes on two cores
COMMON="logger=csv data.samples_per_class=20"
lane() {  # target dataset, source dataset
  local target=$1 source=$2 dir=$OUT/$1
  $PY train.py data=$source $COMMON hydra.run.dir=$dir/source_$source > /dev/null
  local ckpt=$dir/source_$source/checkpoints/best.ckpt
  $PY train.py -m data=$target strategy=linear_probe,finetune backbone=efficientnet_lite0 backbone.pretrained=true,false \
    $COMMON hydra.sweep.dir=$dir/runs_lite0 > /dev/null
  $PY train.py -m data=$target strategy=linear_probe,finetune backbone=resnet18 backbone.pretrained=false \
    $COMMON hydra.sweep.dir=$dir/runs_resnet18 > /dev/null
  $PY train.py -m data=$target strategy=linear_probe,finetune backbone=checkpoint backbone.path=$ckpt \
    $COMMON hydra.sweep.dir=$dir/runs_checkpoint > /dev/null
  $PY -m tl_lightning.diagnose rank data=$target data.samples_per_class=20 \
    "backbones=[efficientnet_lite0,random:efficientnet_lite0,random:resnet18,$ckpt]" hydra.run.dir=$dir/rank > /dev/null
  $PY scripts/rank_vs_accuracy.py $dir/rank/diagnose.json $dir/runs_lite0 $dir/runs_resnet18 $dir/runs_checkpoint \
    | tee $dir/rank_vs_accuracy.md
}
lane fashion_mnist digits &
lane digits fashion_mnist
wait
