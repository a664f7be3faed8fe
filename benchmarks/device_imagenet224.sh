#!/bin/bash
# Per-image GPU rates at ImageNet size (issue 14's cost table for 1 and 8 GPUs), for a lent CUDA machine that has
# torch but neither dvc nor this project installed; carried as for device_check.sh (.whl/ and .devdata/).
# bench_scale.py runs every DCQ stage of pipeline/presets/imagenet.yaml (ResNet-34, ImageNet stem, 224 px) on
# CIFAR-10 upsampled to 224 px at two sizes, bench_refine_memory.py measures refinement's seconds per image-step on
# the GPU, then imagenet_cost.py turns the rates into ImageNet-1K hours.
# Usage there: OUT=dir N1=2000 N2=6000 bash benchmarks/device_imagenet224.sh   (about 6 min on an H100)
# Dry run on a CPU: OUT=/tmp/d SKIP_PIP=1 N1=20 N2=40 STEPS=2 TEACHER=40 RDEV=cpu RPC=2 RATE=3 PATH=.venv/bin:$PATH \
#   bash benchmarks/device_imagenet224.sh
set -u
exec > >(tee -a $OUT/log.txt) 2>&1
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site TQDM_DISABLE=1 PYTHONUNBUFFERED=1
[ -d ../shared/data/cifar10-jpeg ] || { mkdir -p ../shared/data && tar xzf .devdata/cifar10.tar.gz -C ../shared/data; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
python3 -m pipeline.cli preset imagenet --merged > /tmp/imagenet-params.yaml || exit 1  # the preset over params.yaml
python3 benchmarks/bench_scale.py --sizes ${N1:-2000} ${N2:-6000} --image-size 224 --params /tmp/imagenet-params.yaml \
  --set base.device=auto --set prepare.test_split=test --set refine.steps=${STEPS:-30} \
  --teacher-images ${TEACHER:-2000} --teacher-epochs 1 --work /tmp/scale224 --json $OUT/scale_imagenet_224px_gpu.json
python3 benchmarks/imagenet_cost.py $OUT/scale_imagenet_224px_gpu.json --workers 1 8 | tee $OUT/cost.md
# refine's own rates at 224 px on the GPU (20 clusters x RPC images, 1 step vs RATE steps; the stage's chunked code),
# then the table again with them (refine's row from the image-step rate, not from the STEPS-step bench_scale run)
python3 benchmarks/bench_refine_memory.py --device ${RDEV:-cuda} --per-cluster ${RPC:-64} --one-graph --steps 1 \
  --rate-steps ${RATE:-6} --json $OUT/refine_memory_224px_gpu.json \
  && python3 benchmarks/imagenet_cost.py $OUT/scale_imagenet_224px_gpu.json --refine $OUT/refine_memory_224px_gpu.json \
  --workers 1 8 | tee $OUT/cost_refine_rates.md
