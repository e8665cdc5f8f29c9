"""What `rawcnn train --micro-batches M` costs: the training step with and without fixed micro-batches.

    python bench/bench_micro.py [--input 227] [--batch 32] [--steps 5] [--threads 2] [--json out.jsonl]

The step is rawcnn.training.train's on a seeded random float32 batch of the built-in custom model (input
3 x S x S, S = --input): forward(train) + softmax-CE + backward (no input gradient) + SGD-momentum.
Rows, each a fresh child process, medians of --steps steps after one warm-up step:
    1 proc, plain        the one-process step (what --micro-batches 1 or no flag runs)
    1 proc, M = 2, 4     rawcnn.training.distributed.MicroBatches in one process: M forwards and backwards
                         of n / M rows, each gradient copied into a flat buffer, summed as a tree
    2 procs, M = 2       the exact data-parallel step: one micro-batch per rank, the two partial
                         sums combined by Send/Recv, the total broadcast from rank 0
    2 procs, buckets     today's data-parallel step without --micro-batches (bucketed Iallreduce
                         started during the backward; agrees with one process to float rounding)
Before timing, the 2-rank M = 2 child checks that its summed gradients equal, bit for bit, those
of M = 2 in one process (rank 0 recomputes them with the same dropout masks): 'bits equal'.
'peak MB' is the peak resident memory of the timed steps (after the check), summed over ranks.
'exchange s' is the median time the exact step spent combining over ranks (Send/Recv + Bcast).
'others' is the share of the CPUs that processes outside the benchmark used while it ran.
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


def build(size, batch):
    import numpy as np

    from rawcnn.engine.layers import SoftmaxCrossEntropy
    from rawcnn.engine.models import build as build_net
    from rawcnn.engine.optim import SGD
    net = build_net("custom", seed=0, input_shape=(3, size, size))
    crit = SoftmaxCrossEntropy().to(net.be)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)  # (B, C, H, W)
    y = rng.integers(0, 2, batch).astype(np.int64)  # (B,)
    tr = SimpleNamespace(net=net, crit=crit, train_split=SimpleNamespace(x=x, y=y), augment=None,
                         to_input=lambda b: b, hooks=SimpleNamespace(balance="none"), batch_size=batch)
    return tr, SGD(net, lr=1e-3, momentum=0.9, weight_decay=5e-4)


def child(args):
    import numpy as np

    from rawcnn.engine.checkpoint import dropout_rng_states, set_dropout_rng_states
    from rawcnn.training.distributed import MicroBatches, Single, from_environment
    common.setup_threads(args.threads)
    dist = from_environment("cpu") if args.child == "mpi" else Single()
    tr, opt = build(args.input, args.batch)
    net, crit, x, y = tr.net, tr.crit, tr.train_split.x, tr.train_split.y
    idx = np.arange(args.batch)
    micro = MicroBatches(args.micro, dist) if args.micro else None
    equal = None
    if micro is not None and dist.size > 1:  # correctness first: the same bits as M in one process
        states = dropout_rng_states(net)
        micro.step(tr, idx)
        got = [g.copy() for _, _, _, g in net.parameters(trainable_only=True)]
        flag = np.zeros(1)
        if dist.is_root:
            set_dropout_rng_states(net, states)
            MicroBatches(args.micro, Single()).step(tr, idx)
            flag[0] = all(np.array_equal(a, g)
                          for a, (_, _, _, g) in zip(got, net.parameters(trainable_only=True), strict=True))
        dist.Bcast(flag, root=0)
        equal = bool(flag[0])
        del got
        common.reset_peak_rss()  # the peak of the timed steps, not of the check's second set of buffers

    def step():
        if micro is not None:
            micro.step(tr, idx)
        elif dist.size > 1:
            dist.train_step(tr, idx)
        else:
            crit.forward(net.forward(x, train=True), y)
            net.backward(crit.backward(), input_grad=False)
        opt.step()

    steps, exch, j0 = [], [], common._cpu_jiffies()
    own0 = os.times()
    with net.reusing_buffers():
        for i in range(args.steps + 1):  # the first is the warm-up
            if dist.size > 1:
                dist.barrier()
            e0, t0 = micro.seconds_exchange if micro else 0.0, time.perf_counter()
            step()
            if i:
                steps.append(time.perf_counter() - t0)
                exch.append((micro.seconds_exchange if micro else 0.0) - e0)
    own = np.array([(os.times().user + os.times().system - own0.user - own0.system) * os.sysconf("SC_CLK_TCK")])
    if dist.size > 1:
        dist.allreduce(own)
    j1 = common._cpu_jiffies()
    others = None if j0 is None else max(0.0, ((j1[0] - j0[0]) - own[0]) / max(1, j1[1] - j0[1]))
    rss = np.array([common.hwm_mb() or 0.0])
    if dist.size > 1:
        dist.allreduce(rss)  # both ranks' peaks
    row = {"procs": dist.size, "threads": args.threads, "micro": args.micro, "step_s": statistics.median(steps),
           "min_s": min(steps), "exchange_s": statistics.median(exch) if micro and dist.size > 1 else None,
           "bits_equal": equal, "peak_rss_mb": float(rss[0]), "others": others,
           "grad_mb": sum(g.nbytes for _, _, _, g in net.parameters(trainable_only=True)) / 1e6}
    if dist.is_root:
        print("ROW " + json.dumps(row), flush=True)


def run_child(cmd, env):
    return common.run_child(cmd, env, "bench_micro", shown=8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", type=int, default=227, help="the custom model's input side S")
    ap.add_argument("--batch", type=int, default=32, help="the global batch")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up)")
    ap.add_argument("--threads", type=int, default=common.default_threads(), help="cores in all")
    ap.add_argument("--json", default=None, help="append each row as a JSON line")
    ap.add_argument("--micro", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=["single", "mpi"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    from rawcnn.training.distributed import find_mpiexec
    mpiexec = find_mpiexec()
    me = [sys.executable, os.path.abspath(__file__), "--input", str(args.input), "--batch", str(args.batch),
          "--steps", str(args.steps)]
    env = {**os.environ, "PYTHONPATH": common.REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "MPIR_CVAR_ASYNC_PROGRESS": "0"}
    print(f"# bench_micro: custom 3x{args.input}x{args.input} training step, global batch {args.batch}, "
          f"{args.threads} cores; load average {os.getloadavg()[0]:.2f} at start; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    plan = [("single", 0), ("single", 2), ("single", 4)]
    if mpiexec is not None:
        plan += [("mpi", 2), ("mpi", 0)]
    rows = []
    for mode, m in plan:
        if mode == "single":
            cmd = me + ["--child", "single", "--threads", str(args.threads), "--micro", str(m)]
        else:
            cmd = [mpiexec, "-n", "2"] + me + ["--child", "mpi", "--threads", str(max(1, args.threads // 2)),
                                               "--micro", str(m)]
        rows.append(run_child(cmd, env))
    base = rows[0]["step_s"]
    print(f"{'layout':28s} {'step s':>7s} {'min s':>7s} {'vs plain':>8s} {'exchange s':>10s} {'bits equal':>10s} "
          f"{'peak MB':>8s} {'others':>6s}")
    for r in rows:
        what = (f"{r['procs']} proc{'s' if r['procs'] > 1 else ''} x {r['threads']} thr, "
                + (f"M = {r['micro']}" if r["micro"] else ("plain" if r["procs"] == 1 else "buckets")))
        exch = f"{r['exchange_s']:10.3f}" if r["exchange_s"] is not None else f"{'':10s}"
        eq = f"{str(r['bits_equal']):>10s}" if r["bits_equal"] is not None else f"{'':10s}"
        others = f"{r['others']:6.0%}" if r.get("others") is not None else f"{'n/a':>6s}"
        print(f"{what:28s} {r['step_s']:7.3f} {r['min_s']:7.3f} {r['step_s'] / base:7.2f}x {exch} {eq} "
              f"{r['peak_rss_mb']:8.0f} {others}")
    print(f"gradients {rows[0]['grad_mb']:.0f} MB per step; load average {os.getloadavg()[0]:.2f} at the end "
          f"(peak MB: the process's peak RSS, summed over ranks)")
    if args.json:
        with open(args.json, "a") as fh:
            for r in rows:
                fh.write(json.dumps({"bench": "micro", "input": args.input, "batch": args.batch, **r}) + "\n")


if __name__ == "__main__":
    main()
