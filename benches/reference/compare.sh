#!/usr/bin/env bash
# Side-by-side: the plain-PyTorch reference (sgmcmc_reference.py) and ablate's engine on the same
# MNIST MLP epoch, same data and thread count; prints medians and ratios.
#
#   benches/reference/compare.sh [threads...]      (default: 1 2)
#
# Installs torch==2.11.0 into a venv outside the clone (${ABLATE_CACHE:-~/.cache/ablate}/bench-venv)
# the first time (~4.7 GB: the PyPI wheel pulls its CUDA libraries).
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=${ABLATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ablate}
venv=$cache/bench-venv
if ! "$venv/bin/python" -c 'import torch; assert torch.__version__.startswith("2.11.0")' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.11.0
fi
mnist=$cache/data/mnist
[[ -e $mnist/train-images-idx3-ubyte || -e $mnist/train-images-idx3-ubyte.gz ]] || {
  echo "MNIST not cached: run \`ablate data fetch mnist\` first" >&2; exit 1; }
# The built-in plugins next to the bench binary (the CLI binary and its Polars are not needed).
cargo build --release --quiet -p ablate-plugin-integrators -p ablate-plugin-priors -p ablate-plugin-likelihoods -p ablate-plugin-noise
threads=("$@"); [[ ${#threads[@]} -gt 0 ]] || threads=(1 2)
for t in "${threads[@]}"; do
  ref=$("$venv/bin/python" benches/reference/sgmcmc_reference.py --mnist "$mnist" --threads "$t" --epochs 6)
  ours=$(ABLATE_BENCH_CNN=0 ABLATE_BENCH_CHAINS=1 ABLATE_BENCH_THREADS=$t ABLATE_BENCH_MNIST=$mnist cargo bench --quiet -p ablate-engine --bench epoch 2>/dev/null | grep '"mnist-mlp"')
  python3 - "$ref" "$ours" <<'PY'
import json, sys
ref, ours = json.loads(sys.argv[1]), json.loads(sys.argv[2])
r, o = ref["median_epoch_seconds"], ours["median_epoch_seconds"]
print(f"threads {ours['threads']}: pytorch reference {r:.3f} s/epoch, ablate {o:.3f} s/epoch "
      f"(ratio {r / o:.2f}x), FLOP bound {ours['flop_bound_seconds']:.3f} s (ablate at {o / ours['flop_bound_seconds']:.2f}x of it)")
PY
done
