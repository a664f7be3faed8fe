#!/bin/bash
# Device check: the default pipeline (main job) and the paper preset's DCQ stages on a CUDA machine that has
# torch but neither dvc nor this project installed (the lent H100 of 2026-11-26; results in gpu_h100_2026-11-26/).
# Stage commands are `dvc repro --dry -f`'s, run in its order, each timed; DEADLINE (s) skips what would not fit.
# Carried beside the checkout: .whl/ (cp312 wheels: zarr, numcodecs, donfig, crc32c, google-crc32c, grad-cam,
# ttach, faiss-cpu) and .devdata/ (cifar10.tar.gz of ../shared/data/cifar10-jpeg).
# Usage there: OUT=dir DEADLINE=360 bash benchmarks/device_check.sh   (PAPER_ONLY=1: the paper preset part only)
set -u
T0=$(date +%s)
DEADLINE=${DEADLINE:-420}
exec > >(tee -a $OUT/log.txt) 2>&1
el(){ echo $(( $(date +%s) - T0 )); }
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site TQDM_DISABLE=1 PYTHONUNBUFFERED=1
mkdir -p /tmp/bin; printf '#!/bin/sh\nexec python3 -m pipeline.cli "$@"\n' > /tmp/bin/dcq; chmod +x /tmp/bin/dcq; export PATH=/tmp/bin:$PATH
[ -d ../shared/data/cifar10-jpeg ] || mkdir -p ../shared/data && [ -d ../shared/data/cifar10-jpeg ] || tar xzf .devdata/cifar10.tar.gz -C ../shared/data
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
python3 -c "import torch, faiss, zarr, pytorch_grad_cam, numpy; print('torch', torch.__version__, torch.cuda.is_available(), 'faiss', faiss.__version__, 'zarr', zarr.__version__, 'numpy', numpy.__version__)"
step(){ local name=$1; shift
  if [ $(el) -gt $DEADLINE ]; then echo "SKIP $name at $(el)s"; return; fi
  local s=$(date +%s%N); "$@" >> $OUT/stages.log 2>&1; local rc=$?
  printf "STEP %-28s rc=%d %6d ms (at %ds)\n" "$name" $rc $(( ($(date +%s%N) - s) / 1000000 )) $(el)
  [ $rc -ne 0 ] && tail -n 15 $OUT/stages.log; pack; return 0; }
pack(){ tar czf $OUT/results.tgz $(find gpu paper -name '*.json' -o -name '*.csv' -o -name '*.md' -o -name '*.html' 2>/dev/null) 2>/dev/null; }
D=gpu; T=$D/timings
if [ -z "${PAPER_ONLY:-}" ]; then
step prepare dcq prepare --out $D/prepared.zarr --timing $T/prepare.json
step teacher dcq teacher --prepared $D/prepared.zarr --checkpoint $D/teacher/model.pt --metrics $D/teacher/metrics.json --timing $T/teacher.json
step attention dcq attention --prepared $D/prepared.zarr --teacher $D/teacher/model.pt --out $D/attention.zarr --timing $T/attention.json
step features dcq features --prepared $D/prepared.zarr --teacher $D/teacher/model.pt --out $D/features.zarr --timing $T/features.json
step cluster dcq cluster --features $D/features.zarr --prepared $D/prepared.zarr --out $D/clusters.zarr --timing $T/cluster.json
step colour_counts dcq colour_counts --prepared $D/prepared.zarr --clusters $D/clusters.zarr --attention $D/attention.zarr --out $D/colour_counts.zarr --timing $T/colour_counts.json
for q in 1 2 4; do
  step palette@$q dcq palette --bits $q --colour-counts $D/colour_counts.zarr --out $D/palettes/q$q.zarr --timing $T/palette-q$q.json
  step refine@$q dcq refine --bits $q --prepared $D/prepared.zarr --clusters $D/clusters.zarr --palettes $D/palettes/q$q.zarr --out $D/refined/q$q.zarr --metrics $D/refined/q$q.json --timing $T/refine-q$q.json
done
step encode dcq encode --prepared $D/prepared.zarr --clusters $D/clusters.zarr --refined $D/refined --out $D/dcq --timing $T/encode.json
trn(){ local m=$1 q=$2 s=$3; local set=$D/dcq/q$q.zarr dir=dcq-q$q tag=dcq-q$q; [ $m = full ] && set=$D/prepared.zarr dir=full tag=full
  local bq=""; [ $m = dcq ] && bq="--bits $q"
  dcq train --method $m $bq --model convnetd3w64 --seed $s --train-set $set --prepared $D/prepared.zarr --checkpoint $D/runs/main/$dir/convnetd3w64-seed$s.pt --record $D/runs/main/$dir/convnetd3w64-seed$s.json --timing $T/train-$tag-convnetd3w64-seed$s.json; }
step train_full@0_alone trn full 0 0
# One at a time: on 2026-11-26 a second wave of three runs started in parallel on the GPU printed nothing in 240 s.
for run in "full 0 1" "dcq 1 0" "dcq 2 0" "dcq 4 0" "dcq 1 1" "dcq 2 1" "dcq 4 1"; do step "train ${run}" trn $run; done
for q in 1 2 4; do step fidelity@$q dcq fidelity --store $D/dcq/q$q.zarr --prepared $D/prepared.zarr --out $D/fidelity/main/dcq-q$q.json --timing $T/fidelity-dcq-q$q.json; done
step report dcq report --runs $D/runs --prepared $D/prepared.zarr --timings $T --fidelity $D/fidelity --teacher-metrics $D/teacher/metrics.json --records $D/reports/metrics.json --summary $D/reports/summary.json --plot-data $D/reports/accuracy_vs_ratio.csv --plot $D/reports/accuracy_vs_ratio.png --grid $D/reports/train_images.png --methods-grid $D/reports/methods_images.png --fidelity-plot $D/reports/accuracy_vs_fidelity.png --confusion $D/reports/per_class.png --sharing-plot $D/reports/sharing_k.png --markdown $D/reports/report.md --html $D/reports/report.html
grep -h '"accuracy"' $D/runs/main/*/*.json | head -20
fi
DEADLINE=${PDEADLINE:-$DEADLINE}
# Paper preset (pipeline/presets/paper.yaml; all 50,000 train images, ResNet-18) with 15 teacher epochs, not 200.
P="--params benchmarks/device_paper15.yaml"; E=paper; PT=$E/timings
step P_prepare dcq prepare $P --out $E/prepared.zarr --timing $PT/prepare.json
step P_teacher dcq teacher $P --prepared $E/prepared.zarr --checkpoint $E/teacher/model.pt --metrics $E/teacher/metrics.json --timing $PT/teacher.json
step P_attention dcq attention $P --prepared $E/prepared.zarr --teacher $E/teacher/model.pt --out $E/attention.zarr --timing $PT/attention.json
step P_features dcq features $P --prepared $E/prepared.zarr --teacher $E/teacher/model.pt --out $E/features.zarr --timing $PT/features.json
step P_cluster dcq cluster $P --features $E/features.zarr --prepared $E/prepared.zarr --out $E/clusters.zarr --timing $PT/cluster.json
step P_colour_counts dcq colour_counts $P --prepared $E/prepared.zarr --clusters $E/clusters.zarr --attention $E/attention.zarr --out $E/colour_counts.zarr --timing $PT/colour_counts.json
for q in 1 2 3 4 5 6; do
  step P_palette@$q dcq palette $P --bits $q --colour-counts $E/colour_counts.zarr --out $E/palettes/q$q.zarr --timing $PT/palette-q$q.json
  step P_refine@$q dcq refine $P --bits $q --prepared $E/prepared.zarr --clusters $E/clusters.zarr --palettes $E/palettes/q$q.zarr --out $E/refined/q$q.zarr --metrics $E/refined/q$q.json --timing $PT/refine-q$q.json
done
step P_encode dcq encode $P --prepared $E/prepared.zarr --clusters $E/clusters.zarr --refined $E/refined --out $E/dcq --timing $PT/encode.json
DEADLINE=$((DEADLINE+30)) step P_train_dcq_q2 dcq train $P --method dcq --bits 2 --model resnet18 --seed 0 --train-set $E/dcq/q2.zarr --prepared $E/prepared.zarr --checkpoint $E/runs/q2.pt --record $E/runs/dcq-q2-seed0.json --timing $PT/train-dcq-q2.json
pack
echo "DONE at $(el)s"
