#!/bin/bash
# A shorter GPU check (from a folder made by gpu_bundle.sh): the bench at K = 1 and 17 for the
# quickstart MLP, the MNIST MLP protocol and ResNet-20 on CIFAR-shaped data (≈ 1 minute on an H200).
set -u
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/gpu-results}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/log.txt
python3 cifar_shaped.py cifar
for w in quickstart-mlp mnist-mlp cifar-resnet20-bn; do for k in 1 17; do
  s=$SECONDS
  ABLATE_BENCH_DEVICE=cuda ABLATE_BENCH_MNIST=$PWD/mnist ABLATE_BENCH_CIFAR=$PWD/cifar ABLATE_BENCH_WORKLOADS=$w ABLATE_BENCH_CHAINS=$k \
    timeout 100 ./epoch --bench 2>>$OUT/bench.err | tee -a $OUT/bench.jsonl
  echo "$w K=$k: rc ${PIPESTATUS[0]}, $((SECONDS - s)) s" | tee -a $OUT/log.txt
done; done
