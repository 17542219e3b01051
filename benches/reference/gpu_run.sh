#!/bin/bash
# The GPU benchmark (run from a folder made by gpu_bundle.sh): ablate's epoch bench on CUDA, one
# process per workload and K so that the device memory is per K, with cuDNN's autotuner on
# (default) and off, and the plain-PyTorch eager reference on the same data. Writes log.txt,
# bench.jsonl and ref.jsonl into $OUT.
set -u
OUT=${OUT:-$PWD/gpu-results}; mkdir -p "$OUT"
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1
date -u +%FT%TZ | tee $OUT/log.txt
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $OUT/log.txt
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' | tee -a $OUT/log.txt
python3 cifar_shaped.py cifar
run() {
  local s=$SECONDS
  ABLATE_BENCH_DEVICE=cuda ABLATE_BENCH_MNIST=$PWD/mnist ABLATE_BENCH_FASHION=$PWD/fashion ABLATE_BENCH_CIFAR=$PWD/cifar \
    ABLATE_BENCH_WORKLOADS=$1 ABLATE_BENCH_CHAINS=$2 timeout 120 ./epoch --bench 2>>$OUT/bench.err | tee -a $OUT/bench.jsonl
  echo "$1 K=$2: rc ${PIPESTATUS[0]}, $((SECONDS - s)) s" | tee -a $OUT/log.txt
}
for k in 1 17; do run quickstart-mlp $k; done
for k in 1 17; do run mnist-mlp $k; done
for k in 1 4 17 32; do run cifar-resnet20-bn $k; done
export ABLATE_CUDNN_BENCHMARK=0; for k in 1 4 17; do run cifar-resnet20-bn $k; done; unset ABLATE_CUDNN_BENCHMARK
for k in 1 17; do run fashion-cnn-bn $k; done
s=$SECONDS; python3 sgmcmc_reference.py --model resnet20 --cifar cifar --device cuda --epochs 4 --cudnn-benchmark | tee -a $OUT/ref.jsonl; echo "ref resnet bench $((SECONDS - s)) s" | tee -a $OUT/log.txt
s=$SECONDS; python3 sgmcmc_reference.py --model resnet20 --cifar cifar --device cuda --epochs 4 | tee -a $OUT/ref.jsonl; echo "ref resnet $((SECONDS - s)) s" | tee -a $OUT/log.txt
s=$SECONDS; python3 sgmcmc_reference.py --mnist mnist --device cuda --epochs 6 | tee -a $OUT/ref.jsonl; echo "ref mlp $((SECONDS - s)) s" | tee -a $OUT/log.txt
