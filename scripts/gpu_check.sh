#!/usr/bin/env bash
# The harness's GPU check, in at most 8 minutes on one GPU machine; writes one results file.
#
#   bash scripts/gpu_check.sh [RESULTS_FILE]      (default: results/gpu_check.txt)
#
# Needs the project importable (a venv from scripts/setup.sh, or, on a machine without a network,
# python3 with torch and the folder .gpu_site/ that scripts/gpu_site.sh gathers) and an NVIDIA
# GPU. Each step has its own time limit; a failing step is recorded and the next one runs.
# What each figure means: docs/performance.md, "The GPU check".
#   1. nvidia-smi, torch's view of the GPU and the precision flags a cell runs with
#   2. the EGL devices and the renderer (GL_RENDERER) a cell on that GPU gets
#   3. python -m drm.bench --gpu: update ms (TF32 / FP32 convolutions), 1, 2, 4, 8 cells sharing
#      the GPU (frames/s per cell and per GPU, GPU MiB with rendering, CPU cores, pipeline hidden)
#   4. two 2,000-frame DrQ-v2 cells with deterministic=true, compared bitwise
#   5. the 40k-frame DrQ-v2 validation cell on cartpole_balance_sparse for the time left: frames/s
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-results/gpu_check.txt}
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}   # the whole check; step 5 gets what is left
START=$(date +%s)
mkdir -p "$(dirname "$RESULTS")"
: > "$RESULTS"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export PYTHONUNBUFFERED=1

# A machine without a network: the packages scripts/gpu_site.sh gathered, and this checkout.
[ -d .gpu_site ] && export PYTHONPATH="$PWD/.gpu_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -x .venv/bin/python ] && export PATH="$PWD/.venv/bin:$PATH"
PY=$(command -v python || command -v python3)

say() { echo "$*" | tee -a "$RESULTS"; }
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
step() {  # step NAME LIMIT_S COMMAND...: run it under a limit, its output into the results
  local name=$1 limit=$2; shift 2
  say ""; say "== $name (limit ${limit} s, $(left) s of the check left)"
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$RESULTS"
  local rc=${PIPESTATUS[0]}
  say "-- $name: exit $rc after $(( $(date +%s) - t0 )) s"
}

say "gpu_check $(date -u +%FT%TZ) on $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
step "1 nvidia-smi and torch" 30 bash -c "nvidia-smi; $PY - <<'EOF'
import torch
from drm.train import configure_determinism
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version())
print('GPU', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
configure_determinism(False)
print('cell defaults: matmul', torch.backends.cuda.matmul.fp32_precision,
      'cudnn conv', torch.backends.cudnn.conv.fp32_precision, 'benchmark', torch.backends.cudnn.benchmark)
EOF"
step "2 EGL devices and the renderer per GPU" 90 "$PY" -c '
import torch
from drm.cell import rendering
print("EGL devices:", *(f"  {d.describe()}" for d in rendering.egl_devices()), sep="\n")
for i in range(torch.cuda.device_count()):
    chosen = rendering.choose(rendering.CudaDevice.of(torch.device(f"cuda:{i}")))
    print(f"cuda:{i}: {chosen}", *(f"  warning: {w}" for w in chosen.warnings), sep="\n")
'
step "3 python -m drm.bench --gpu" 240 "$PY" -m drm.bench --gpu --reps 10 --update-episodes 2 \
  --seed-frames 1000 --episode-frames 1000 --cells 1,2,4,8 --timeout 200

DET=(agent=drqv2 task=cheetah_run seed=1 device=cuda deterministic=true threads=2 progress=false
     num_train_frames=2000 num_seed_frames=1000 eval_every_frames=1000 num_eval_episodes=1
     batch_size=256 replay_buffer_size=10000 snapshot_every_frames=100000000)
step "4 two deterministic 2,000-frame cells, compared bitwise" 120 bash -c "
  '$PY' -m drm.train ${DET[*]} out_dir=$SCRATCH/det_a > $SCRATCH/det_a.log 2>&1 &
  '$PY' -m drm.train ${DET[*]} out_dir=$SCRATCH/det_b > $SCRATCH/det_b.log 2>&1
  wait \$!; tail -2 $SCRATCH/det_a.log $SCRATCH/det_b.log
  '$PY' - $SCRATCH/det_a $SCRATCH/det_b <<'EOF'
import sys
import pandas as pd
a, b = sys.argv[1:3]
for name, skip in (('eval.csv', ['total_time']), ('train.csv', ['total_time', 'fps'])):
    x, y = (pd.read_csv(f'{d}/{name}').drop(columns=skip) for d in (a, b))
    print(name, 'identical' if x.equals(y) else 'DIFFERENT', len(x), 'rows')
EOF"

REMAINING=$(( $(left) - 10 ))
if [ "$REMAINING" -gt 30 ]; then
  step "5 the 40k-frame validation cell, for ${REMAINING} s" "$REMAINING" "$PY" -m drm.train agent=drqv2 \
    task=cartpole_balance_sparse seed=1 device=cuda threads=4 progress=false num_train_frames=40000 \
    eval_every_frames=20000 num_eval_episodes=10 snapshot_every_frames=10000 out_dir="$SCRATCH/val"
  say "validation cell reached: $(tail -n +2 "$SCRATCH/val/work/train.csv" 2>/dev/null | wc -l) episodes"
  tail -n 5 "$SCRATCH/val/train.log" 2>/dev/null | tee -a "$RESULTS"
  "$PY" - "$SCRATCH/val/work/train.csv" <<'EOF' 2>&1 | tee -a "$RESULTS"
import sys
import pandas as pd
train = pd.read_csv(sys.argv[1])
updating = train[train.frame > 4000]
print(f"frames {int(train.frame.max())}; frames/s with updates {updating.fps.mean():.1f} over "
      f"{len(updating)} episodes; last episode return {train.episode_reward.iloc[-1]:.1f}")
EOF
fi
say ""; say "gpu_check: done in $(( $(date +%s) - START )) s; results in $RESULTS"
