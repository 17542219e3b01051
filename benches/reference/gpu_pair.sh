#!/bin/bash
# Same-machine pairs on a GPU (from a folder made by gpu_bundle.sh): ablate K = 1 and the PyTorch
# eager reference, MNIST MLP and ResNet-20, twice, alternating (≈ 1.5 minutes on an H200).
set -u
OUT=${OUT:-$PWD/gpu-results}; mkdir -p "$OUT"
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
export PYTHONUNBUFFERED=1
python3 cifar_shaped.py cifar
for rep in 1 2; do
  for w in mnist-mlp cifar-resnet20-bn; do
    ABLATE_BENCH_DEVICE=cuda ABLATE_BENCH_MNIST=$PWD/mnist ABLATE_BENCH_CIFAR=$PWD/cifar ABLATE_BENCH_WORKLOADS=$w ABLATE_BENCH_CHAINS=1 \
      timeout 100 ./epoch --bench 2>/dev/null | tee -a $OUT/bench.jsonl
  done
  python3 sgmcmc_reference.py --mnist mnist --device cuda --epochs 6 | tee -a $OUT/ref.jsonl
  python3 sgmcmc_reference.py --model resnet20 --cifar cifar --device cuda --epochs 4 --cudnn-benchmark | tee -a $OUT/ref.jsonl
done
