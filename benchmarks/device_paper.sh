#!/bin/bash
# The paper's regime on one lent GPU, as one command: all 50,000 CIFAR-10 train images, a ResNet-18 teacher on the
# paper preset, DCQ at q=1, then ResNet-18 for 50 epochs on DCQ q=1 and on full colour (the paper's Table 20 gives
# DCQ 75.01% at 1 bit), then, if time remains, the per-image K-means LAB quantizer and JPEG at DCQ q=1's bytes.
#
#   OUT=dir bash benchmarks/device_paper.sh                 # on the device (carry .whl/ and .devdata/ as for
#                                                           # benchmarks/device_check.sh; SKIP_PIP=1 where installed)
#   OUT=/tmp/dry DRY=1 bash benchmarks/device_paper.sh      # the dry run on a CPU: 4 images per class, 1 epoch
#
# Every step runs alone (a concurrent start hung on a GPU once), logs its seconds, images/s and the GPU's peak
# memory, and copies its results into $OUT as soon as they exist, so a timeout still returns what finished.
# DEADLINE (s since start) skips a step that would start after it. TEACHER_EPOCHS (15) and EPOCHS (50) set the runs.
set -u
: "${OUT:?set OUT to the folder the results go to}"
mkdir -p "$OUT"
T0=$(date +%s)
DEADLINE=${DEADLINE:-780}
W=${WORK:-/tmp/dcq-paper}
rm -rf "$W"; mkdir -p "$W"
exec > >(tee -a "$OUT/log.txt") 2>&1
el(){ echo $(( $(date +%s) - T0 )); }
if [ -z "${DRY:-}" ] && [ -z "${SKIP_PIP:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
dcq(){ "$PY" -m pipeline.cli "$@"; }
[ -d ../shared/data/cifar10-jpeg ] || { mkdir -p ../shared/data && tar xzf .devdata/cifar10.tar.gz -C ../shared/data; }
GPU=0; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader && GPU=1
nproc; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# The params: the paper preset over params.yaml, with the run lengths of this script (and tiny sizes for DRY).
dcq preset paper --merged > "$W/paper.yaml" || exit 1
"$PY" - "$W/paper.yaml" "$W/params.yaml" <<'EOF' || exit 1
import os, sys, yaml
p = yaml.safe_load(open(sys.argv[1]))
dry = bool(os.environ.get("DRY"))
epochs = 1 if dry else int(os.environ.get("EPOCHS", 50))
p["teacher"]["recipe"]["epochs"] = 1 if dry else int(os.environ.get("TEACHER_EPOCHS", 15))
p["palette"]["bits"] = [1]
p["train"].update(models=["resnet18"], bits=[1], seeds=[0])
p["train"]["recipe"]["epochs"] = epochs
p["codec"]["search_images"] = 64 if dry else p["codec"]["search_images"]
if dry:
    p["base"]["device"] = "cpu"
    p["prepare"].update(train_per_class=4, test_per_class=2)
    p["refine"].update(steps=2, images_per_cluster=4)
    p["cluster"].update(k=4, iterations=5, n_init=1)
    for section in ("teacher", "train", "features", "attention", "encode"):
        if "batch_size" in p[section]:
            p[section]["batch_size"] = 16
    for section in ("teacher", "train"):
        p[section]["recipe"]["batch_size"] = 16
yaml.safe_dump(p, open(sys.argv[2], "w"), sort_keys=False)
print("params:", "dry" if dry else "paper", "train epochs", epochs, "teacher epochs", p["teacher"]["recipe"]["epochs"])
EOF
cp "$W/params.yaml" "$OUT/params.yaml"
P="--params $W/params.yaml"; D=$W/data; T=$D/timings

peak_since(){ [ $GPU = 1 ] && awk -v s="$1" '$1 >= s {if ($2 > m) m = $2} END {print (m ? m " MiB" : "n/a")}' "$W/gpu_mem.log" || echo n/a; }
[ $GPU = 1 ] && { while true; do echo "$(date +%s) $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)"; sleep 0.5; done > "$W/gpu_mem.log" & }
save(){ for f in "$@"; do [ -e "$f" ] && mkdir -p "$OUT/$(dirname "${f#$W/}")" && cp -r "$f" "$OUT/${f#$W/}"; done; return 0; }
step(){ local name=$1; shift
  if [ "$(el)" -gt "$DEADLINE" ]; then echo "SKIP $name at $(el)s (DEADLINE=$DEADLINE)"; return 1; fi
  local start=$(date +%s) s=$(date +%s%N); "$@" > "$W/step.log" 2>&1; local rc=$?
  local ms=$(( ($(date +%s%N) - s) / 1000000 ))
  cat "$W/step.log" >> "$OUT/stages.log"
  local line; line=$(grep -E '^\[[a-z_@ -]+\] ' "$W/step.log" | tail -1)
  printf "STEP %-24s rc=%d %8d ms  peak GPU %s  | %s\n" "$name" $rc $ms "$(peak_since $start)" "$line"
  [ $rc -ne 0 ] && tail -n 15 "$W/step.log"
  return $rc; }

step prepare dcq prepare $P --out $D/prepared.zarr --timing $T/prepare.json || exit 1
step teacher dcq teacher $P --prepared $D/prepared.zarr --checkpoint $D/teacher/model.pt --metrics $D/teacher/metrics.json --timing $T/teacher.json || exit 1
save $D/teacher/metrics.json
step features dcq features $P --prepared $D/prepared.zarr --teacher $D/teacher/model.pt --out $D/features.zarr --timing $T/features.json &&
step cluster dcq cluster $P --features $D/features.zarr --prepared $D/prepared.zarr --out $D/clusters.zarr --timing $T/cluster.json &&
step attention dcq attention $P --prepared $D/prepared.zarr --teacher $D/teacher/model.pt --out $D/attention.zarr --timing $T/attention.json &&
step colour_counts dcq colour_counts $P --prepared $D/prepared.zarr --clusters $D/clusters.zarr --attention $D/attention.zarr --out $D/colour_counts.zarr --timing $T/colour_counts.json &&
step palette@1 dcq palette $P --bits 1 --colour-counts $D/colour_counts.zarr --out $D/palettes/q1.zarr --timing $T/palette-q1.json &&
step refine@1 dcq refine $P --bits 1 --prepared $D/prepared.zarr --clusters $D/clusters.zarr --palettes $D/palettes/q1.zarr --out $D/refined/q1.zarr --metrics $D/refined/q1.json --timing $T/refine-q1.json &&
step encode dcq encode $P --prepared $D/prepared.zarr --clusters $D/clusters.zarr --refined $D/refined --out $D/dcq --timing $T/encode.json || exit 1
dcq inspect $D/dcq/q1.zarr > $D/dcq/q1-summary.json; save $D/refined/q1.json $D/dcq/q1-summary.json $T

train(){ local method=$1 set=$2; shift 2
  dcq train $P --method $method "$@" --model resnet18 --seed 0 --train-set $set --prepared $D/prepared.zarr \
    --checkpoint $D/runs/$method/resnet18-seed0.pt --record $D/runs/$method/resnet18-seed0.json --timing $T/train-$method.json; }
step train_dcq@1 train dcq $D/dcq/q1.zarr --bits 1; save $D/runs/dcq/resnet18-seed0.json $T
step train_full train full $D/prepared.zarr; save $D/runs/full/resnet18-seed0.json $T
step baseline_kmeans_lab@1 dcq baseline $P --method kmeans_lab --bits 1 --prepared $D/prepared.zarr --out $D/baselines/kmeans_lab-q1.zarr --timing $T/baseline-kmeans_lab-q1.json &&
  step train_kmeans_lab@1 train kmeans_lab $D/baselines/kmeans_lab-q1.zarr --bits 1; save $D/runs/kmeans_lab/resnet18-seed0.json $T
step codec_jpeg@1 dcq codec $P --codec jpeg --bits 1 --prepared $D/prepared.zarr --match $D/dcq/q1.zarr --out $D/codecs/jpeg-q1.zarr --timing $T/codec-jpeg-q1.json &&
  step train_jpeg@1 train jpeg $D/codecs/jpeg-q1.zarr --bits 1; save $D/runs/jpeg/resnet18-seed0.json $T
"$PY" - "$W/data/runs" <<'EOF' | tee "$OUT/summary.md"
import json, sys
from pathlib import Path
print("| train set | ResNet-18 test accuracy (%) | epochs | train s | hardware |\n|---|---|---|---|---|")
for rec in sorted(Path(sys.argv[1]).glob("*/resnet18-seed0.json")):
    r = json.loads(rec.read_text())
    print(f"| {r['method']}{'' if r.get('bits') is None else ' q=' + str(r['bits'])} | {r['test_accuracy']:.2f} | "
          f"{r.get('epochs', '-')} | {r.get('train_seconds', '-')} | {r.get('hardware', '-')} |")
EOF
[ $GPU = 1 ] && kill %1 2>/dev/null
echo "done in $(el) s"
