"""One command for a bare GPU machine: the CUDA tests, then rawcnn vs PyTorch+cuDNN, then bandwidths.

    PYTHONPATH=. python bench/gpu_check.py OUT_DIR            # on the GPU machine, from the repo root
    PYTHONPATH=. python bench/gpu_check.py OUT_DIR --simulate # anywhere: Numba's CUDA simulator,
                                                             # tiny shapes, torch on the CPU

Needs CuPy, numba-cuda, PyTorch (CUDA build), h5py, OpenCV and click, and no network. Phases, in
order, each run only when the time left (a hard cap of --budget-s, 8 minutes by default) covers
its estimate; a skipped phase is recorded with the reason:

  1. `python -m pytest -q tests/cuda` in a subprocess (the real GPU; the simulator with --simulate)
  2. the custom model's training step (batch 32) and VGG16's forward (batch 16): rawcnn's cuda
     backend vs PyTorch+cuDNN with TF32 off and on; outputs compared before anything is timed
  3. GB/s of LRN forward, max-pool forward and im2col, beside a device-to-device copy of the same
     bytes (the ceiling a memory-bound kernel can reach); bytes = read once + written once
  4. bench/gpu_nccl_check.py when that file exists (its output is recorded as it is)

Prints a table and writes OUT_DIR/gpu_check.json (written to a temporary file and renamed).
Times are medians of --repeats runs after a warm-up, with the device synchronised around each.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
for p in (REPO, BENCH):
    if p not in sys.path:
        sys.path.insert(0, p)

FULL = {"train": ("custom", None, 32), "vgg": ("vgg16", None, 16),
        "lrn": (32, 96, 55, 55), "pool": (32, 96, 55, 55), "im2col": (16, 64, 112, 112)}
# --simulate: Numba's simulator runs one Python thread per CUDA thread (even a slimmed custom net at
# its smallest input, 99x99, takes minutes per forward), so the two nets become miniatures with the
# same layer types: custom's conv-ReLU-LRN-pool-...-FC, VGG's conv3x3-ReLU pairs and 2x2 pools
TINY_SPECS = {
    "custom": {"name": "custom-tiny", "input": [3, 15, 15], "layers": [
        {"type": "Conv2d", "name": "conv1", "out_channels": 3, "kernel_size": 3, "stride": 2},
        {"type": "ReLU", "name": "relu1"},
        {"type": "LRN", "name": "norm1", "size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0},
        {"type": "MaxPool2d", "name": "pool1", "kernel_size": 3, "stride": 2},
        {"type": "Conv2d", "name": "conv2", "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"type": "ReLU", "name": "relu2"}, {"type": "Flatten", "name": "flatten"},
        {"type": "Linear", "name": "fc6", "out_features": 4}, {"type": "ReLU", "name": "relu6"},
        {"type": "Dropout", "name": "drop6", "p": 0.5},
        {"type": "Linear", "name": "fc8", "out_features": 2}]},
    "vgg16": {"name": "vgg-tiny", "input": [3, 8, 8], "layers": [
        {"type": "Conv2d", "name": "conv1_1", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"type": "ReLU", "name": "relu1_1"}, {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
        {"type": "Conv2d", "name": "conv2_1", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"type": "ReLU", "name": "relu2_1"}, {"type": "MaxPool2d", "name": "pool2", "kernel_size": 2, "stride": 2},
        {"type": "Flatten", "name": "flatten"}, {"type": "Linear", "name": "fc8", "out_features": 2}]}}
TINY = {"train": ("custom", "tiny", 2), "vgg": ("vgg16", "tiny", 1),
        "lrn": (1, 4, 5, 5), "pool": (1, 2, 5, 5), "im2col": (1, 2, 4, 4)}
# phase estimates in seconds (GPU; the simulator's are larger and given by --simulate's own table)
EST = {"pytest": 150, "train": 60, "vgg": 60, "bandwidth": 20, "nccl": 60}
EST_SIM = {"pytest": 60, "train": 30, "vgg": 30, "bandwidth": 20, "nccl": 30}


class Clock:
    """Elapsed time against the hard cap; `fits(est)` says whether a phase of `est` seconds fits."""

    def __init__(self, budget_s):
        self.t0, self.budget = time.monotonic(), float(budget_s)

    def left(self):
        return self.budget - (time.monotonic() - self.t0)

    def fits(self, est):
        return self.left() >= est


def _sync(xp):
    if xp.__name__ == "cupy":
        xp.cuda.Device().synchronize()


def median_time(fn, sync, repeats, warmup=1):
    import statistics
    for _ in range(warmup):
        fn()
    sync()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


# -- phase 1 --------------------------------------------------------------------------------------
def phase_pytest(clock, simulate, pytest_args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if simulate:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args]
    t = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=max(1.0, clock.left() - 30))
        rc, out = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout", (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    lines = [l for l in out.strip().splitlines() if l.strip()]
    return {"command": " ".join(cmd), "rc": rc, "seconds": round(time.monotonic() - t, 1),
            "summary": lines[-1] if lines else "", "tail": "\n".join(lines[-15:])}


# -- phase 2 --------------------------------------------------------------------------------------
def _nets(model, size, be_name, torch, dev):
    """The rawcnn net on backend be_name and its PyTorch twin (same weights) on torch device dev.

    size None: the built-in model; "tiny": its miniature in TINY_SPECS (simulator)."""
    from rawcnn.engine.models import build
    from torch_peer import peer_from_net
    net = build(model if size is None else TINY_SPECS[model], seed=0)
    peer = peer_from_net(net, share=False).to(dev)
    return net.to(be_name), peer


def _tf32(torch, on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def phase_models(what, shapes, be, torch, dev, repeats):
    """rawcnn vs torch for 'train' (custom training step) or 'vgg' (VGG16 forward)."""
    import numpy as np

    from bench_models import rawcnn_train_step, torch_train_step
    from kernels import to_numpy
    from rawcnn.engine.gradcheck import max_diff
    model, input_shape, batch = shapes[what]
    net, peer = _nets(model, input_shape, be.name, torch, dev)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)  # (N, C, H, W)
    K = [l for l in net.layers if l.kind == "Linear"][-1].out_features
    labels = rng.integers(0, K, batch).astype(np.int64)  # (N,)
    xd, xt = be.asarray(x), torch.from_numpy(x).to(dev)
    lt = torch.from_numpy(labels).to(dev)
    for l in peer.modules():  # dropout off in both for the comparison (eval mode; net train=False)
        l.eval()
    _tf32(torch, False)
    with torch.no_grad():
        ref = peer(xt).float().cpu().numpy()
    row = {"workload": f"{model}{'' if input_shape is None else '-tiny'} "
                       f"{'training step' if what == 'train' else 'forward'} b{batch}",
           "input": list(net.input_shape),
           "logits_max_diff_vs_torch_tf32_off": max_diff(to_numpy(net.forward(xd)), ref)}
    xp_sync = (lambda: _sync(be.xp))
    t_sync = (lambda: torch.cuda.synchronize() if dev == "cuda" else None)
    if what == "train":
        net.reuse_buffers(True)  # kept activation and gradient buffers, as train() runs the step
        step = rawcnn_train_step(net)
        row["rawcnn_s"] = median_time(lambda: step(xd, be.asarray(labels)), xp_sync, repeats)
        net.reuse_buffers(False)
        peer.train()
        tstep = torch_train_step(peer, torch)
        for tf32 in (False, True):
            _tf32(torch, tf32)
            row[f"torch_tf32_{'on' if tf32 else 'off'}_s"] = median_time(lambda: tstep(xt, lt), t_sync, repeats)
    else:
        row["rawcnn_s"] = median_time(lambda: net.forward(xd), xp_sync, repeats)
        for tf32 in (False, True):
            _tf32(torch, tf32)
            with torch.no_grad():
                row[f"torch_tf32_{'on' if tf32 else 'off'}_s"] = median_time(lambda: peer(xt), t_sync, repeats)
    _tf32(torch, False)
    for k in ("off", "on"):
        row[f"rawcnn_over_torch_tf32_{k}"] = row[f"torch_tf32_{k}_s"] / row["rawcnn_s"]  # >1: rawcnn faster
    return row


# -- phase 3 --------------------------------------------------------------------------------------
def phase_bandwidth(shapes, be, repeats):
    """GB/s of LRN, max-pool and im2col forward beside a device-to-device copy of the same bytes."""
    import numpy as np
    xp = be.xp
    sync = (lambda: _sync(xp))
    rows = []

    def copy_gbs(nbytes):
        a = xp.zeros(nbytes // 4, xp.float32)
        b = xp.empty_like(a)
        t = median_time(lambda: b.__setitem__(slice(None), a), sync, repeats)  # device-to-device copy
        return 2 * nbytes / t / 1e9

    rng = np.random.default_rng(0)
    x = be.asarray(rng.standard_normal(shapes["lrn"]).astype(np.float32))
    t = median_time(lambda: be.lrn.lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=2.0), sync, repeats)
    nbytes = 3 * x.nbytes  # read x, write y and scale
    rows.append({"op": "lrn_forward", "shape": list(x.shape), "GB/s": nbytes / t / 1e9,
                 "copy_GB/s": copy_gbs(x.nbytes)})
    x = be.asarray(rng.standard_normal(shapes["pool"]).astype(np.float32))
    y, _ = be.maxpool2d.maxpool2d_forward(x, kernel_size=(3, 3), stride=(2, 2), padding=(0, 0), ceil_mode=False)
    t = median_time(lambda: be.maxpool2d.maxpool2d_forward(x, kernel_size=(3, 3), stride=(2, 2),
                                                           padding=(0, 0), ceil_mode=False), sync, repeats)
    nbytes = x.nbytes + y.nbytes * 3  # read x, write y (4 B) and argmax (8 B)
    rows.append({"op": "maxpool2d_forward 3x3/2", "shape": list(x.shape), "GB/s": nbytes / t / 1e9,
                 "copy_GB/s": copy_gbs(x.nbytes)})
    x = be.asarray(rng.standard_normal(shapes["im2col"]).astype(np.float32))
    cols = be.conv2d.im2col(x, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    t = median_time(lambda: be.conv2d.im2col(x, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)), sync, repeats)
    nbytes = x.nbytes + cols.nbytes
    rows.append({"op": "im2col 3x3/1 p1", "shape": list(x.shape), "GB/s": nbytes / t / 1e9,
                 "copy_GB/s": copy_gbs(cols.nbytes)})
    for r in rows:
        r["fraction_of_copy"] = r["GB/s"] / r["copy_GB/s"]
    return rows


# -- phase 4 --------------------------------------------------------------------------------------
def phase_nccl(clock, simulate):
    path = os.path.join(BENCH, "gpu_nccl_check.py")
    if not os.path.exists(path):
        return {"skipped": "bench/gpu_nccl_check.py does not exist in this tree"}
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if simulate:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    try:
        r = subprocess.run([sys.executable, path], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=max(1.0, clock.left() - 5))
        return {"rc": r.returncode, "output_tail": (r.stdout + r.stderr)[-4000:]}
    except subprocess.TimeoutExpired:
        return {"rc": "timeout", "output_tail": ""}


# -- driver ---------------------------------------------------------------------------------------
def write_json(out_dir, result):
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".gpu_check.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    path = os.path.join(out_dir, "gpu_check.json")
    os.replace(tmp, path)
    return path


def print_table(result):
    print(f"\n== gpu_check on {result['device']} ({'simulator' if result['simulate'] else 'GPU'}) ==")
    p = result["phases"]
    if "pytest" in p:
        print(f"tests/cuda: rc {p['pytest'].get('rc')}  {p['pytest'].get('summary', p['pytest'])}")
    print(f"{'workload':30s} {'rawcnn ms':>10s} {'torch TF32 off':>15s} {'torch TF32 on':>14s} "
          f"{'speed-up off':>13s} {'speed-up on':>12s} {'logits diff':>12s}")
    for k in ("train", "vgg"):
        r = p.get(k, {})
        if "rawcnn_s" not in r:
            print(f"{k:30s} {r.get('skipped') or r.get('error', '')}")
            continue
        print(f"{r['workload']:30s} {r['rawcnn_s'] * 1e3:10.2f} {r['torch_tf32_off_s'] * 1e3:15.2f} "
              f"{r['torch_tf32_on_s'] * 1e3:14.2f} {r['rawcnn_over_torch_tf32_off']:12.2f}x "
              f"{r['rawcnn_over_torch_tf32_on']:11.2f}x {r['logits_max_diff_vs_torch_tf32_off']:12.1e}")
    bw = p.get("bandwidth")
    if isinstance(bw, list):
        print(f"{'op':26s} {'shape':>18s} {'GB/s':>9s} {'copy GB/s':>10s} {'of copy':>8s}")
        for r in bw:
            print(f"{r['op']:26s} {'x'.join(map(str, r['shape'])):>18s} {r['GB/s']:9.1f} "
                  f"{r['copy_GB/s']:10.1f} {r['fraction_of_copy']:7.0%}")
    elif bw:
        print(f"bandwidth: {bw}")
    if "nccl" in p:
        print(f"gpu_nccl_check: {p['nccl'].get('skipped') or 'rc ' + str(p['nccl'].get('rc'))}")
    print(f"total {result['seconds']:.0f} s of a {result['budget_s']:.0f} s cap")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", help="Folder to write gpu_check.json into.")
    ap.add_argument("--simulate", "--tiny", action="store_true",
                    help="Numba's CUDA simulator, tiny shapes, torch on the CPU (a dry run with no GPU).")
    ap.add_argument("--budget-s", type=float, default=480.0, help="Hard cap on the whole run (seconds).")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pytest-args", default="tests/cuda",
                    help="What the first phase passes to pytest (default: tests/cuda).")
    args = ap.parse_args(argv)
    if args.simulate:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before anything imports numba
    clock = Clock(args.budget_s)
    est = EST_SIM if args.simulate else EST
    shapes = TINY if args.simulate else FULL
    result = {"simulate": args.simulate, "budget_s": args.budget_s, "python": platform.python_version(),
              "host": platform.node(), "device": "?", "phases": {}, "versions": {}}
    phases = result["phases"]

    def run(name, fn):
        if not clock.fits(est[name]):
            phases[name] = {"skipped": f"{clock.left():.0f} s left, the phase needs about {est[name]} s"}
            return
        t = time.monotonic()
        try:
            phases[name] = fn()
        except Exception as e:  # a failed phase is recorded; the others still run
            phases[name] = {"error": f"{type(e).__name__}: {e}"}
        print(f"[{time.monotonic() - clock.t0:6.1f} s] {name} done in {time.monotonic() - t:.1f} s", flush=True)
        write_json(args.out_dir, dict(result, seconds=time.monotonic() - clock.t0))  # partial results

    run("pytest", lambda: phase_pytest(clock, args.simulate, args.pytest_args.split()))
    import numba
    import numpy

    from kernels import get_backend
    be = get_backend("cudasim" if args.simulate else "cuda")
    result["device"] = be.device
    result["versions"].update(numpy=numpy.__version__, numba=numba.__version__)
    try:
        import cupy
        result["versions"]["cupy"] = cupy.__version__
    except Exception as e:
        result["versions"]["cupy"] = f"not importable ({type(e).__name__})"
    try:
        import torch
        result["versions"]["torch"] = torch.__version__
        dev = "cpu" if args.simulate else "cuda"
        if dev == "cuda":
            result["versions"]["cudnn"] = torch.backends.cudnn.version()
            result["torch_device"] = torch.cuda.get_device_name()
    except ImportError:
        torch = None
    for what in ("train", "vgg"):
        if torch is None and clock.fits(est[what]):  # out of time is said first: it holds with or without torch
            phases[what] = {"skipped": "torch is not importable"}
            continue
        run(what, lambda what=what: phase_models(what, shapes, be, torch, dev, args.repeats))
    run("bandwidth", lambda: phase_bandwidth(shapes, be, args.repeats))
    run("nccl", lambda: phase_nccl(clock, args.simulate))
    result["seconds"] = time.monotonic() - clock.t0
    path = write_json(args.out_dir, result)
    print_table(result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
