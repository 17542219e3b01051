#!/usr/bin/env python3
"""Fetch a CPU-usable libtorch 2.11.0 from the PyPI wheels, verify it, cache it.

Idempotent: a complete cache entry (marked by `.complete`) is reused as is.
The cache lives outside the clone: ${ABLATE_CACHE:-${XDG_CACHE_HOME:-~/.cache}/ablate}.
Prints the libtorch directory (with include/ and lib/) on its last line.

Only the package registry (PyPI, through pip) is contacted. Every wheel is checked
against the sha256 pinned below before anything is extracted; a mismatch leaves no
cache entry behind.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

TORCH_VERSION = "2.11.0"
WHEELS = [
    # (requirement, file name, sha256, members to extract: prefix -> destination under libtorch/)
    (
        "torch==2.11.0",
        "torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a",
    ),
    (
        "nvidia-cuda-runtime==13.0.96",
        "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548",
    ),
    (
        "nvidia-cuda-cupti==13.0.85",
        "nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl",
        "4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8",
    ),
]
# The CPU part of libtorch: what libtorch_cpu.so needs at run time.
TORCH_LIBS = {"libtorch_cpu.so", "libc10.so", "libgomp.so.1", "libtorch_global_deps.so", "libshm.so"}
CUDA_LIBS = {"libcudart.so.13", "libcupti.so.13"}
PIP_PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_25_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def cache_root() -> Path:
    if os.environ.get("ABLATE_CACHE"):
        return Path(os.environ["ABLATE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ablate"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log(msg: str) -> None:
    print(f"[fetch_libtorch] {msg}", file=sys.stderr, flush=True)


def fetch_wheel(req: str, name: str, digest: str, wheel_dir: Path) -> Path:
    path = wheel_dir / name
    if path.exists() and sha256(path) == digest:
        return path
    if path.exists():
        log(f"{path} has the wrong sha256; downloading it again")
        path.unlink()
    log(f"downloading {req} from PyPI (pip download)")
    platforms = sum((["--platform", p] for p in PIP_PLATFORMS), [])
    with tempfile.TemporaryDirectory(dir=wheel_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.11", "--implementation", "cp", *platforms, "-d", tmp, req]
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        got = Path(tmp) / name
        if not got.exists():
            sys.exit(f"error: pip did not deliver {name} for {req}; found {os.listdir(tmp)}")
        actual = sha256(got)
        if actual != digest:
            sys.exit(f"error: sha256 mismatch for {name}: expected {digest}, got {actual}. "
                     "Refusing to use it; nothing was cached.")
        os.replace(got, path)
    return path


def extract(wheels: list, dest: Path) -> None:
    (dest / "lib").mkdir(parents=True)
    torch_whl, cudart_whl, cupti_whl = wheels
    with zipfile.ZipFile(torch_whl) as z:
        for m in z.namelist():
            if m.startswith("torch/include/") and not m.endswith("/"):
                target = dest / m[len("torch/"):]
            elif m.startswith("torch/lib/") and os.path.basename(m) in TORCH_LIBS:
                target = dest / "lib" / os.path.basename(m)
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(m) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    for whl in (cudart_whl, cupti_whl):
        with zipfile.ZipFile(whl) as z:
            for m in z.namelist():
                if os.path.basename(m) in CUDA_LIBS:
                    with z.open(m) as src, open(dest / "lib" / os.path.basename(m), "wb") as out:
                        shutil.copyfileobj(src, out)
    for lib in TORCH_LIBS | CUDA_LIBS:
        if not (dest / "lib" / lib).exists():
            sys.exit(f"error: {lib} missing from the wheels; the pinned wheels changed?")
    make_cpu_libtorch_so(dest / "lib")
    (dest / "build-version").write_text(TORCH_VERSION + "\n")


def make_cpu_libtorch_so(lib: Path) -> None:
    """torch-sys always links `-ltorch`. The wheel's libtorch.so pulls in libtorch_cuda.so (and
    with it cuDNN, cuBLAS, ...), so the CPU cache gets the same thin library that CPU builds of
    libtorch ship: an empty libtorch.so whose only content is a dependency on libtorch_cpu.so."""
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-shared", "-o", str(lib / "libtorch.so"), "-Wl,-soname,libtorch.so", "-x", "c", "/dev/null",
           "-L" + str(lib), "-Wl,--no-as-needed", "-ltorch_cpu", "-lc10", "-Wl,-rpath,$ORIGIN"]
    subprocess.run(cmd, check=True)


def main() -> None:
    root = cache_root()
    dest = root / f"libtorch-{TORCH_VERSION}-cpu"
    if (dest / ".complete").exists():
        print(dest)
        return
    wheel_dir = root / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheels = [fetch_wheel(req, name, digest, wheel_dir) for req, name, digest in WHEELS]
    log(f"extracting libtorch {TORCH_VERSION} (CPU libraries) into {dest}")
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=root))
    try:
        extract(wheels, tmp)
        (tmp / ".complete").write_text("ok\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print(dest)


if __name__ == "__main__":
    main()
