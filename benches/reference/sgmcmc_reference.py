#!/usr/bin/env python3
"""Plain-PyTorch reference of one ablate epoch, written the way peer research code is.

The MNIST MLP 784-100-100-10 (n = 10000 training examples, batch 100), the paper's symplectic
Euler SG-MCMC step with the 32-batch layerwise preconditioner estimated at the start of every
epoch, an N(0, 1) prior, one chain, a Python loop over parameter tensors. Prints one JSON line:
median seconds per epoch over the timed epochs.

    python3 sgmcmc_reference.py --mnist ~/.cache/ablate/data/mnist --threads 1 --epochs 6

`--model resnet20 --cifar DIR` runs the same loop on ResNet-20 v1 with batch norm (Keras
layout: 3x3 convolutions with bias, 1x1 projection shortcuts without norm, batch-norm momentum
0.01 and eps 1e-3, as ablate's) over 32x32x3 CIFAR-10 binary batches (batch 128);
`--device cuda` runs on the GPU (PyTorch eager).
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


def read_cifar(folder, n):
    """The first n records of the CIFAR-10 training batches (1 label byte + 3072 pixel bytes)."""
    parts = []
    for i in range(1, 6):
        with open(os.path.join(folder, f"data_batch_{i}.bin"), "rb") as f:
            parts.append(torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).reshape(-1, 3073))
    records = torch.cat(parts)[:n]
    return records[:, 1:].reshape(-1, 3, 32, 32).float() / 255.0, records[:, 0].long()


class Block(torch.nn.Module):
    def __init__(self, inp, out, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(inp, out, 3, stride, 1)
        self.norm1 = torch.nn.BatchNorm2d(out, eps=1e-3, momentum=0.01)
        self.conv2 = torch.nn.Conv2d(out, out, 3, 1, 1)
        self.norm2 = torch.nn.BatchNorm2d(out, eps=1e-3, momentum=0.01)
        self.shortcut = torch.nn.Conv2d(inp, out, 1, stride, 0) if stride != 1 or inp != out else None

    def forward(self, h):
        y = torch.relu(self.norm1(self.conv1(h)))
        y = self.norm2(self.conv2(y))
        return torch.relu(y + (h if self.shortcut is None else self.shortcut(h)))


def resnet20():
    layers = [torch.nn.Conv2d(3, 16, 3, 1, 1), torch.nn.BatchNorm2d(16, eps=1e-3, momentum=0.01), torch.nn.ReLU()]
    inp = 16
    for stage in range(3):
        for block in range(3):
            out = 16 << stage
            layers.append(Block(inp, out, 2 if stage > 0 and block == 0 else 1))
            inp = out
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10)]
    return torch.nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["mlp", "resnet20"], default="mlp")
    ap.add_argument("--mnist")
    ap.add_argument("--cifar")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--n", type=int, default=10000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    dev = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark

    lr, beta, temperature = 0.1, 0.98, 1.0
    if args.model == "mlp":
        if not args.mnist:
            raise SystemExit("--model mlp needs --mnist DIR")
        x = read_idx(find(args.mnist, "train-images-idx3-ubyte"))[: args.n].reshape(args.n, -1).float() / 255.0
        y = read_idx(find(args.mnist, "train-labels-idx1-ubyte"))[: args.n].long()
        batch = 100
        sizes = [784, 100, 100, 10]
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            params.append((torch.rand(fan_out, fan_in) * 2 * limit - limit).to(dev).requires_grad_())
            params.append(torch.zeros(fan_out, device=dev).requires_grad_())

        def forward(xb):
            h = xb
            for i in range(0, len(params), 2):
                h = h @ params[i].t() + params[i + 1]
                if i + 2 < len(params):
                    h = torch.relu(h)
            return h
    else:
        if not args.cifar:
            raise SystemExit("--model resnet20 needs --cifar DIR (CIFAR-10 binary batches)")
        x, y = read_cifar(args.cifar, args.n)
        batch = 128
        net = resnet20().to(dev).train()
        params = list(net.parameters())
        forward = net
    x, y = x.to(dev), y.to(dev)
    n = x.shape[0]
    momenta = [torch.zeros_like(p) for p in params]
    mass = [1.0 for _ in params]
    log_2pi = math.log(2 * math.pi)

    def loss_fn(xb, yb):
        nll = torch.nn.functional.cross_entropy(forward(xb), yb)
        log_prior = sum(-0.5 * (p * p).sum() - 0.5 * p.numel() * log_2pi for p in params)
        return nll - log_prior / n

    def batches():
        while True:
            perm = torch.randperm(n, device=dev)
            for s in range(0, n - batch + 1, batch):
                idx = perm[s: s + batch]
                yield x[idx], y[idx]

    train, estimate = batches(), batches()
    h = math.sqrt(lr / n)
    sigma = math.sqrt(2 * temperature * (1 - beta))
    times = []
    for _ in range(args.epochs):
        if dev.type == "cuda":
            torch.cuda.synchronize()
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
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    timed = times[1:] if len(times) > 1 else times
    print(json.dumps({"impl": "pytorch-reference", "model": args.model, "device": args.device,
                      "cudnn_benchmark": args.cudnn_benchmark,
                      "threads": args.threads, "epochs": len(timed),
                      "median_epoch_seconds": statistics.median(timed), "torch": torch.__version__,
                      "device_memory_mib": torch.cuda.max_memory_reserved() / 2**20 if dev.type == "cuda" else None}))


if __name__ == "__main__":
    main()
