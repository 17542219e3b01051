#!/usr/bin/env python3
"""Write reports/results/README.md: one table over every hypothesis grid's committed report.

For each grid in HYPOTHESES and each factor level of its summary.csv: the ensemble NLL at T = 1,
the best 0 < T < 1, their difference with its combined standard error, and the verdict by the
rule every report states (present if the best 0 < T < 1 beats T = 1 by more than 2 combined SE;
absent if T = 1 is at least as good or within 2 SE; undetermined without T = 1 or SEs).
Run by ablations/run-all.sh after the grids; standard library only.
"""
import csv
import math
import os
import sys

HYPOTHESES = [
    ("temperature", "Headline: T << 1 beats the Bayes posterior T = 1"),
    ("inference-accuracy", "Inaccurate SDE simulation (integrator, step size)"),
    ("minibatch-noise", "Minibatch gradient noise"),
    ("bias-variance", "Bias-variance trade-off of the ensemble (see its ensemble-size table)"),
    ("dirty-likelihood", "Dirty likelihoods (batch norm, dropout, augmentation)"),
    ("priors", "Poor prior (see its prior predictive table)"),
    ("depth", "Capacity / depth"),
    ("hmc-reference", "SG-MCMC vs an exact sampler (full-batch HMC; see its distance-to-reference table)"),
    ("curation", "Dataset curation (Aitchison 2021) and label noise (Kapoor et al. 2022)"),
    ("sequence", "Sequence model (the paper's CNN-LSTM, here on MNIST-1D), N(0,1) vs correlated prior"),
    ("sequence-mnist-rows", "Sequence model on MNIST read row by row (first-n subsets)"),
    ("precision", "Network arithmetic: fp32 vs bf16 autocast (MNIST MLP protocol)"),
]
FIXED = {"temperature", "n_cells", "n_done", "n_failed", "n_diverged", "n_unfinished"}


def number(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def verdict(rows):
    at_one = [r for r in rows if r["temperature"] == 1.0 and r["nll"] is not None]
    cold = [r for r in rows if 0.0 < r["temperature"] < 1.0 and r["nll"] is not None]
    if not at_one or not cold:
        return None, None, None, "undetermined (no T = 1 or no 0 < T < 1 result)"
    one, best = at_one[0], min(cold, key=lambda r: r["nll"])
    if one["se"] is None or best["se"] is None:
        return one, best, None, "undetermined (no standard error)"
    gap, se = one["nll"] - best["nll"], math.hypot(one["se"], best["se"])
    return one, best, (gap, se), ("**present**" if gap > 2 * se else "absent")


def main(root):
    lines = [
        "# Results of the hypothesis grids (CPU scale)",
        "",
        "Made by `ablations/hypotheses.py` from the committed `reports/results/<grid>/summary.csv`",
        "(each grid's `RUN.md` has its command, machine, revision and wall time; `report.md` the",
        "details). Verdict: the cold posterior effect is present if the ensemble NLL at the best",
        "0 < T < 1 beats T = 1 by more than 2 combined standard errors (over seeds; with one seed,",
        "the test-set SE).",
        "",
        "| hypothesis | grid | factor level | NLL at T = 1 | best 0 < T < 1 | gap ± SE | effect |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for grid, hypothesis in HYPOTHESES:
        path = os.path.join(root, grid, "summary.csv")
        if not os.path.exists(path):
            lines.append(f"| {hypothesis} | `{grid}` | (not run) | | | | |")
            continue
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        factors = [c for c in rows[0].keys() if c not in FIXED and not c.endswith(("_mean", "_se"))] if rows else []
        levels = {}
        for r in rows:
            key = ", ".join(f"{c}={r[c]}" for c in factors) or "all cells"
            levels.setdefault(key, []).append(
                {"temperature": float(r["temperature"]), "nll": number(r["nll_mean"]), "se": number(r["nll_se"])}
            )
        for key, level in levels.items():
            one, best, gap, text = verdict(level)
            fmt = lambda r: f"{r['nll']:.4f} ± {r['se']:.4f}" if r and r["se"] is not None else (f"{r['nll']:.4f}" if r else "")
            best_text = f"T = {best['temperature']:g}: {fmt(best)}" if best else ""
            gap_text = f"{gap[0]:+.4f} ± {gap[1]:.4f}" if gap else ""
            lines.append(f"| {hypothesis} | `{grid}` | {key} | {fmt(one)} | {best_text} | {gap_text} | {text} |")
    out = os.path.join(root, "README.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reports/results")
