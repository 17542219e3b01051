#!/bin/bash
# The precision and layout check on a GPU (from a folder made by gpu_bundle.sh): the epoch bench
# in fp32 / tf32 / bf16, with channels-last off and on for ResNet-20, at K = 1 and 17 (MNIST MLP)
# and K = 17 and 32 (ResNet-20 + batch norm on CIFAR-shaped data), then the statistical check of
# tf32 and bf16 on CUDA (the conjugate-regression posterior test); first, the step_ops count of
# kernel launches per step on CUDA. About 5 minutes on an H200.
# Writes log.txt and precision.jsonl (one line per run: precision, channels_last_requested,
# s/epoch, device memory) into $OUT.
set -u
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/gpu-results}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a $OUT/log.txt
[ -d cifar ] || python3 cifar_shaped.py cifar
run() { # workload K precision channels_last
  local s=$SECONDS
  ABLATE_BENCH_DEVICE=cuda ABLATE_BENCH_MNIST=$PWD/mnist ABLATE_BENCH_CIFAR=$PWD/cifar ABLATE_BENCH_WORKLOADS=$1 \
    ABLATE_BENCH_CHAINS=$2 ABLATE_BENCH_PRECISION=$3 ABLATE_CHANNELS_LAST=$4 \
    timeout 120 ./epoch --bench 2>>$OUT/precision.err | tee -a $OUT/precision.jsonl
  echo "$1 K=$2 $3 channels_last=$4: rc ${PIPESTATUS[0]}, $((SECONDS - s)) s" | tee -a $OUT/log.txt
}
# Kernel launches per step on CUDA itself (the count the CPU predicts; reports/results/performance.md).
s=$SECONDS
ABLATE_BENCH_DEVICE=cuda ABLATE_BENCH_MNIST=$PWD/mnist ABLATE_BENCH_CIFAR=$PWD/cifar ABLATE_BENCH_CHAINS=1,18 \
  timeout 120 ./step_ops --bench 2>>$OUT/step_ops.err | tee -a $OUT/step_ops.jsonl | cut -c1-200
echo "step_ops cuda: rc ${PIPESTATUS[0]}, $((SECONDS - s)) s" | tee -a $OUT/log.txt
for p in fp32 tf32 bf16; do
  for k in 1 17; do run mnist-mlp $k $p 0; done
  for cl in 0 1; do for k in 17 32; do run cifar-resnet20-bn $k $p $cl; done; done
done
s=$SECONDS
timeout 300 ./regression cuda --nocapture 2>&1 | tail -30 | tee -a $OUT/log.txt
echo "regression cuda (tf32, bf16 posterior check): rc ${PIPESTATUS[0]}, $((SECONDS - s)) s" | tee -a $OUT/log.txt
