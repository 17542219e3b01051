#!/usr/bin/env python3
"""CIFAR-shaped random data for speed benchmarks: CIFAR-10 binary batch files (1 label byte +
3072 pixel bytes per record) of uniform random pixels and labels, in the layout ablate's cifar10
reader and sgmcmc_reference.py --model resnet20 read. Timing does not depend on the pixel values.

    python3 cifar_shaped.py DIR [--train 10000] [--test 1000] [--seed 1]
"""
import argparse
import os
import random


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--train", type=int, default=10000, help="training records over the five batch files")
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.dir, exist_ok=True)

    def write(name, count):
        with open(os.path.join(args.dir, name), "wb") as f:
            for _ in range(count):
                f.write(bytes([rng.randrange(10)]) + rng.randbytes(3072))

    per_file = -(-args.train // 5)
    for i in range(5):
        write(f"data_batch_{i + 1}.bin", min(per_file, args.train - i * per_file))
    write("test_batch.bin", args.test)


if __name__ == "__main__":
    main()
