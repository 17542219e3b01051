#!/usr/bin/env bash
# Run every hypothesis grid at CPU scale and copy each report to reports/results/<grid>/,
# with the command, machine, ablate revision and wall time (the `paper` command of the
# ablation suite). Usage: ablations/run-all.sh [grid names...]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${ABLATE:-${CARGO_TARGET_DIR:-target}/debug/ablate}
grids=("$@")
[[ ${#grids[@]} -gt 0 ]] || grids=(inference-accuracy minibatch-noise priors bias-variance dirty-likelihood temperature depth curation sequence sequence-mnist-rows precision)
"$bin" data fetch mnist >/dev/null
"$bin" data fetch fashion-mnist >/dev/null
for g in "${grids[@]}"; do
  start=$(date +%s)
  # Workers and threads from the runner's defaults: one batch of chains gets both cores.
  cmd="ablate run ablations/$g.json --out runs"
  "$bin" run "ablations/$g.json" --out runs -q || true
  end=$(date +%s)
  dest=reports/results/$g
  rm -rf "$dest" && mkdir -p "$dest"
  cp -r "runs/$g/report/." "$dest/"
  cat > "$dest/RUN.md" <<MD
# How this report was made

- command: \`$cmd\` (from the repository root; \`ablations/run-all.sh $g\` does the same and copies the report here)
- machine: $(nproc) CPU cores, $(free -g | awk '/Mem/{print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME"), no GPU
- ablate revision: $(git rev-parse HEAD)$(git diff --quiet -- . ':(exclude)reports/results' || echo " (with uncommitted changes)")
- wall time: $((end - start)) s
- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)
MD
  echo "$g: $((end - start)) s" >&2
done
# One table over every hypothesis grid: reports/results/README.md
python3 ablations/hypotheses.py reports/results >/dev/null
