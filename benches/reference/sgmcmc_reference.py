#!/usr/bin/env python3
"""Plain-PyTorch reference of one ablate epoch, written the way peer research code is.

The MNIST MLP 784-100-100-10 (n = 10000 training examples, batch 100), the paper's symplectic
Euler SG-MCMC step with the 32-batch layerwise preconditioner estimated at the start of every
epoch, an N(0, 1) prior, one chain, a Python loop over parameter tensors. Prints one JSON line:
median seconds per epoch over the timed epochs.

    python3 sgmcmc_reference.py --mnist ~/.cache/ablate/data/mnist --threads 1 --epochs 6
"""
import argparse
import gzip
import json
import math
import os
import statistics
import time

import torch


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def find(folder, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return p
    raise SystemExit(f"{stem} not found in {folder}; run `ablate data fetch mnist`")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--n", type=int, default=10000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)

    x = read_idx(find(args.mnist, "train-images-idx3-ubyte"))[: args.n].reshape(args.n, -1).float() / 255.0
    y = read_idx(find(args.mnist, "train-labels-idx1-ubyte"))[: args.n].long()
    n, batch, lr, beta, temperature = args.n, 100, 0.1, 0.98, 1.0
    sizes = [784, 100, 100, 10]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        params.append((torch.rand(fan_out, fan_in) * 2 * limit - limit).requires_grad_())
        params.append(torch.zeros(fan_out).requires_grad_())
    momenta = [torch.zeros_like(p) for p in params]
    mass = [1.0 for _ in params]
    log_2pi = math.log(2 * math.pi)

    def loss_fn(xb, yb):
        h = xb
        for i in range(0, len(params), 2):
            h = h @ params[i].t() + params[i + 1]
            if i + 2 < len(params):
                h = torch.relu(h)
        nll = torch.nn.functional.cross_entropy(h, yb)
        log_prior = sum(-0.5 * (p * p).sum() - 0.5 * p.numel() * log_2pi for p in params)
        return nll - log_prior / n

    def batches():
        while True:
            perm = torch.randperm(n)
            for s in range(0, n - batch + 1, batch):
                idx = perm[s: s + batch]
                yield x[idx], y[idx]

    train, estimate = batches(), batches()
    h = math.sqrt(lr / n)
    sigma = math.sqrt(2 * temperature * (1 - beta))
    times = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        # Layerwise preconditioner from 32 minibatches (raw second moment, Welford).
        mean = [torch.zeros_like(p) for p in params]
        m2 = [torch.zeros_like(p) for p in params]
        for k in range(1, 33):
            xb, yb = next(estimate)
            grads = torch.autograd.grad(loss_fn(xb, yb), params)
            for g, mu, s2 in zip(grads, mean, m2):
                delta = g - mu
                mu += delta / k
                s2 += delta * (g - mu)
        new = [math.sqrt((mu * mu + s2 / 32).mean().item() + 1e-7) for mu, s2 in zip(mean, m2)]
        smallest = min(new)
        new = [v / smallest for v in new]
        for m, old, nw in zip(momenta, mass, new):
            m *= math.sqrt(nw / old)
        mass = new
        # The epoch's steps.
        for _ in range(n // batch):
            xb, yb = next(train)
            grads = torch.autograd.grad(loss_fn(xb, yb), params)
            with torch.no_grad():
                for p, m, g, mm in zip(params, momenta, grads, mass):
                    m.mul_(beta).add_(g, alpha=-h * n).add_(torch.randn_like(m), alpha=sigma * math.sqrt(mm))
                    p.add_(m, alpha=h / mm)
        times.append(time.perf_counter() - start)
    timed = times[1:] if len(times) > 1 else times
    print(json.dumps({"impl": "pytorch-reference", "threads": args.threads, "epochs": len(timed),
                      "median_epoch_seconds": statistics.median(timed), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
