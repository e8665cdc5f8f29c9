"""Data-parallel training step: 1 process x T threads against R processes x T/R threads (MPI).

    python bench/bench_mpi.py [--procs 2] [--threads 2] [--batch 32] [--steps 3] [--bucket-mb 25]
                              [--model custom] [--json out.jsonl]

The step is rawcnn.training.train's: forward(train) + softmax-CE + backward (no input gradient) + the
fused SGD-momentum update, on a seeded random batch of `--batch` images (the global batch).
    single  one process, `--threads` threads: the plain one-process step
    mpi     `mpiexec -n procs`, threads // procs each: rawcnn.training.distributed's step (each rank its
            share of the batch, gradients summed in buckets by Iallreduce started during the
            backward), then the same update on every rank
Before timing, the mpi child checks that the summed gradients equal one process's gradients of
the whole batch (rank 0 computes them with the same dropout masks) and prints the max rel diff.

What is reported for the mpi child, as medians over the timed steps:
    step s          the whole step (rank 0's clock; ranks start each step together)
    comm s          the same buckets reduced with nothing else running (post all, wait)
    exposed s       time the step spent waiting for reductions after its backward ended
    hidden          1 - exposed / comm: the share of the allreduce that overlapped the backward
The machine is shared: the header gives the load average and each row the share of the CPUs
that processes outside the benchmark used while it ran ('others').
"""
import argparse
import json
import os
import statistics
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def make_batch(net, batch, seed=1):
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)  # (B, C, H, W)
    K = [l for l in net.layers if l.kind == "Linear"][-1].out_features
    return x, rng.integers(0, K, batch).astype(np.int64)  # (B,)


def build(model):
    from rawcnn.engine.layers import SoftmaxCrossEntropy
    from rawcnn.engine.models import build as build_net
    from rawcnn.engine.optim import SGD
    net = build_net(model, seed=0)
    return net, SoftmaxCrossEntropy(), SGD(net, lr=1e-3, momentum=0.9, weight_decay=5e-4)


def child_single(args):
    common.setup_threads(args.threads)
    net, crit, opt = build(args.model)
    x, y = make_batch(net, args.batch)

    def step():
        logits = net.forward(x, train=True)
        crit.forward(logits, y)
        net.backward(crit.backward(), input_grad=False)
        opt.step()
    t = common.time_it(step, repeats=args.steps, warmup=1)
    return {"mode": "single", "procs": 1, "threads": args.threads, "step_s": t.median,
            "images_per_s": args.batch / t.median, "others": t.others}


def _own_ticks():
    t = os.times()
    return (t.user + t.system) * os.sysconf("SC_CLK_TCK")


def child_mpi(args):
    import numpy as np

    from rawcnn.engine.checkpoint import dropout_rng_states, set_dropout_rng_states
    from rawcnn.engine.gradcheck import max_diff
    from rawcnn.training.distributed import from_environment
    common.setup_threads(args.threads)
    dist = from_environment("cpu", bucket_mb=args.bucket_mb)
    if dist.size < 2:
        raise SystemExit("bench_mpi --child mpi: run me under mpiexec -n 2 or more")
    net, crit, opt = build(args.model)
    x, y = make_batch(net, args.batch)
    tr = SimpleNamespace(net=net, crit=crit, train_split=SimpleNamespace(x=x, y=y), augment=None,
                         to_input=lambda b: b, batch_size=args.batch)
    idx = np.arange(args.batch)

    # correctness first: the summed gradients = one process's gradients of the whole batch
    masks = dropout_rng_states(net)
    dist.train_step(tr, idx)
    summed = {(l.name, k): g.copy() for l, k, _, g in net.parameters(trainable_only=True)}
    check = np.zeros(1)
    if dist.is_root:
        set_dropout_rng_states(net, masks)
        crit.forward(net.forward(x, train=True), y)
        net.backward(crit.backward(), input_grad=False)
        check[0] = max(max_diff(summed[(l.name, k)], g) for l, k, _, g in net.parameters(trainable_only=True))
    dist.comm.Bcast(check, root=0)

    red, steps, waits, comms = dist.reducer, [], [], []
    j0, own0 = common._cpu_jiffies(), _own_ticks()
    for i in range(args.steps + 1):  # the first is the warm-up
        dist.barrier()
        w0, t0 = red.seconds_wait, time.perf_counter()
        dist.train_step(tr, idx)
        opt.step()
        if i:
            steps.append(time.perf_counter() - t0)
            waits.append(red.seconds_wait - w0)
    for _ in range(args.steps):  # the same buckets, nothing else running
        dist.barrier()
        t0 = time.perf_counter()
        red.begin(net)
        for layer in reversed(net.layers):
            if layer.params:
                red.add(layer)
        red.finish()
        comms.append(time.perf_counter() - t0)
    own = np.array([_own_ticks() - own0])
    dist.allreduce(own)
    j1 = common._cpu_jiffies()
    others = None if j0 is None else max(0.0, ((j1[0] - j0[0]) - own[0]) / max(1, j1[1] - j0[1]))
    n_bytes = sum(g.nbytes for g in summed.values())
    step, comm, exposed = (statistics.median(v) for v in (steps, comms, waits))
    return {"mode": "mpi", "procs": dist.size, "threads": args.threads, "step_s": step,
            "images_per_s": args.batch / step, "comm_s": comm, "exposed_s": exposed,
            "hidden": max(0.0, 1 - exposed / comm), "grad_mb": n_bytes / 1e6, "bucket_mb": args.bucket_mb,
            "check_rel": float(check[0]), "others": others, "root": dist.is_root}


def run_child(cmd, env):
    return common.run_child(cmd, env, "bench_mpi", shown=6)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=common.default_threads(),
                    help="cores in all (default: this machine's)")
    ap.add_argument("--batch", type=int, default=32, help="the global batch")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    ap.add_argument("--bucket-mb", type=float, default=25.0)
    ap.add_argument("--model", default="custom")
    ap.add_argument("--json", default=None, help="append each row as a JSON line")
    ap.add_argument("--async-progress", type=int, choices=[0, 1], default=0,
                    help="MPICH's progress thread (MPIR_CVAR_ASYNC_PROGRESS): without it a non-blocking "
                         "allreduce advances only inside MPI calls, i.e. barely during the backward")
    ap.add_argument("--mpi-only", action="store_true", help="skip the one-process row (no ratio)")
    ap.add_argument("--child", choices=["single", "mpi"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        row = child_single(args) if args.child == "single" else child_mpi(args)
        if row.pop("root", True):
            print("ROW " + json.dumps(row), flush=True)
        return
    from rawcnn.training.distributed import find_mpiexec
    mpiexec = find_mpiexec()
    if mpiexec is None:
        raise SystemExit("bench_mpi: no mpiexec (pip install -e '.[mpi]')")
    me = [sys.executable, os.path.abspath(__file__), "--batch", str(args.batch), "--steps", str(args.steps),
          "--bucket-mb", str(args.bucket_mb), "--model", args.model]
    env = {**os.environ, "PYTHONPATH": common.REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print(f"# bench_mpi: {args.model} training step, global batch {args.batch}, {args.threads} cores; "
          f"load average {os.getloadavg()[0]:.2f} at start; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    rows = [] if args.mpi_only else [run_child(me + ["--child", "single", "--threads", str(args.threads)], env)]
    per = max(1, args.threads // args.procs)
    env_mpi = {**env, "MPIR_CVAR_ASYNC_PROGRESS": str(args.async_progress)}
    rows.append(run_child([mpiexec, "-n", str(args.procs)] + me + ["--child", "mpi", "--threads", str(per)], env_mpi))
    mpi = rows[-1]
    print(f"check: summed gradients vs one process, max rel diff {mpi['check_rel']:.2e}"
          f"{'  MISMATCH' if mpi['check_rel'] > 1e-3 else ''}")
    print(f"{'layout':22s} {'step s':>8s} {'img/s':>7s} {'vs 1 proc':>9s} {'comm s':>7s} {'exposed s':>9s} "
          f"{'hidden':>6s} {'others':>6s}")
    for r in rows:
        comm = (f"{r['comm_s']:7.3f} {r['exposed_s']:9.3f} {r['hidden']:6.0%}" if r["mode"] == "mpi"
                else f"{'':7s} {'':9s} {'':6s}")
        others = f"{r['others']:6.0%}" if r.get("others") is not None else f"{'n/a':>6s}"
        ratio = f"{r['images_per_s'] / rows[0]['images_per_s']:8.2f}x" if not args.mpi_only else f"{'':9s}"
        print(f"{r['procs']} proc x {r['threads']} thread{'s' if r['threads'] > 1 else ' '}     {r['step_s']:8.3f} "
              f"{r['images_per_s']:7.2f} {ratio} {comm} {others}")
    print(f"gradients {mpi['grad_mb']:.0f} MB per step in buckets of {args.bucket_mb:g} MB, "
          f"MPIR_CVAR_ASYNC_PROGRESS={args.async_progress}; "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        with open(args.json, "a") as fh:
            for r in rows:
                fh.write(json.dumps({"bench": "mpi", "model": args.model, "batch": args.batch,
                                     "async_progress": args.async_progress, **r}) + "\n")


if __name__ == "__main__":
    main()
