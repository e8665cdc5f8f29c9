"""Model-level benchmarks: images/s and peak memory of rawcnn and of the same net in PyTorch.

    python bench/bench_models.py [--only custom-train custom-fwd alexnet-fwd vgg16-fwd
                                         alexnet-train vgg16-train]
                                 [--blas-env both|as-is|unset] [--malloc default|heap|both]
                                 [--threads N] [--wait-idle S] [--rounds R] [--json out.jsonl]
    python bench/bench_models.py --profile [custom-train|alexnet-train|vgg16-train]
                                                per-layer forward/backward times of a training
                                                step, rawcnn next to PyTorch

Benchmarks (batch, input):
    custom-train   custom net, batch 32, 227x227: forward(train) + softmax-CE + backward + the
                   SGD-momentum update of every parameter (lr 1e-3, momentum 0.9, L2 5e-4 on
                   every parameter, as torch.optim.SGD(weight_decay=5e-4) does)
    custom-fwd     custom net, batch 32, 227x227, forward at test time
    alexnet-fwd    BVLC AlexNet, batch 32, 227x227, 1000 classes, forward
    vgg16-fwd      VGG16, batch 4, 224x224, 1000 classes, forward
    alexnet-train  BVLC AlexNet with a 2-way head (fine-tuning for normal/abnormal), batch 32,
                   227x227: the training step of custom-train, every layer trained
    vgg16-train    VGG16 with a 2-way head, batch 8, 224x224, every layer trained

Each measurement runs in its own subprocess, so the peak RSS (ru_maxrss of that child, read by
the parent with os.wait4) belongs to one framework and one benchmark. Linux starts a child's
ru_maxrss at its parent's RSS at exec time, so the parent imports neither numpy nor torch and
takes its header from a child. The children are:
    info    prints the machine/version header
    check   builds rawcnn (seed 0) and its PyTorch twin (bench/torch_peer.py, same weights) and
            prints the max abs/rel diff of the logits (and, for training, of the loss, every
            gradient and one SGD update; dropout off so both see the same net). Without torch:
            rawcnn's cpu backend against its reference backend at a reduced input size.
    time    builds the net, warms up, then times the step; returns the seconds, the share of the
            CPUs other processes used meanwhile, the RSS before the timed steps and the peak RSS
            during them (VmHWM reset just before them), how much of its memory transparent huge pages
            back after them (AnonHugePages), and the share of the CPU time the hypervisor gave to
            other guests while they ran (steal, from /proc/stat).
    profile per-layer times inside the real custom training step (rawcnn: layer by layer;
            PyTorch: timestamps from forward and backward module hooks).
rawcnn's forward runs inside net.streaming(), as net.predict() runs each batch after its first (the
outputs in two alternating buffers; builds before cd31d67, 2026-12-07 afternoon, but 1c2f925 allocated fresh
arrays every forward);
its training step inside net.reuse_buffers(True), as train() runs it. Subnormal floats are flushed to
zero in both frameworks (--denormals flush, the default: rawcnn's command line and train() flush them,
kernels/cpu/denormals.py; PyTorch by torch.set_flush_denormal(True)); --denormals keep keeps them in both.
Builds before 2026-12-07 kept them (a VGG16 training step on an Intel core then took 16-18 s whenever
the random labels saturated the loss).
The PyTorch child uses torch.set_num_threads(threads), torch.no_grad() for forward, and
loss.backward() + torch.optim.SGD(momentum=0.9, weight_decay=5e-4).step() for training. rawcnn
children run with the environment as it is and with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset
(--blas-env both, the default when they are set), because that choice changes numpy's GEMM
speed; PyTorch uses its own MKL/oneDNN and is run once per malloc setting (see malloc_envs).
--rounds R repeats each workload's pair of children R times per malloc setting, torch first in odd
rounds and rawcnn first in even ones, and ends with every round's ratio and their median: on a VM
whose speed drifts by tens of per cent from minute to minute (bench/RESULTS.md, "Speed round 7"), one
pair of children measures the host as much as the code, and a ratio from children run back to back,
repeated, is the steadier figure.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BENCHES = {
    "custom-train": dict(model="custom", batch=32, mode="train", repeats=5),
    "custom-fwd": dict(model="custom", batch=32, mode="fwd", repeats=5),
    "alexnet-fwd": dict(model="alexnet", batch=32, mode="fwd", repeats=5),
    "vgg16-fwd": dict(model="vgg16", batch=4, mode="fwd", repeats=3),
    # transfer learning's steps (issue 22): every layer trained, a 2-way head as for normal/TB
    # (He init: a fine-tuned net's activations keep their scale; at N(0, 0.01^2) VGG16's vanish
    # to 1e-13 and its gradients sink under float32 rounding)
    "alexnet-train": dict(model="alexnet", batch=32, mode="train", repeats=5, num_classes=2, weight_std="he"),
    "vgg16-train": dict(model="vgg16", batch=8, mode="train", repeats=3, num_classes=2, weight_std="he"),
}
SMALL_INPUT = {"custom": 131, "alexnet": 131, "vgg16": 64}  # reference checks without torch
SGD_HP = dict(lr=1e-3, momentum=0.9, weight_decay=5e-4)
PROFILE_REPEATS = 3


# -- children --------------------------------------------------------------------------------------
def build_net(model, **kw):
    from rawcnn.engine.models import build
    return build(model, seed=0, **kw)


def build_kw(spec):
    """The build() arguments a benchmark names besides its model (head size, init)."""
    return {k: spec[k] for k in ("num_classes", "weight_std") if k in spec}


def make_batch(net, batch, seed=1):
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)  # (N, C, H, W)
    K = [l for l in net.layers if l.kind == "Linear"][-1].out_features
    labels = rng.integers(0, K, batch).astype(np.int64)  # (N,)
    return x, labels


def rawcnn_train_step(net, lr=SGD_HP["lr"], momentum=SGD_HP["momentum"], weight_decay=SGD_HP["weight_decay"]):
    """A closure running one rawcnn training step on (x, labels): forward, loss, backward, SGD.

    As rawcnn.training.train's loop: no gradient w.r.t. the images (input_grad=False). The update is the
    fused kernel per parameter, with L2 on every parameter as torch.optim.SGD applies it.
    """
    from rawcnn.engine.layers import SoftmaxCrossEntropy
    loss_layer = SoftmaxCrossEntropy()
    sgd = net.be.sgd
    velocity = {}

    def step(x, labels):
        logits = net.forward(x, train=True)
        loss = loss_layer.forward(logits, labels)
        net.backward(loss_layer.backward(), input_grad=False)  # as rawcnn.training.train does
        for layer, key, w, dw in net.parameters(trainable_only=True):
            v = velocity.get((layer.name, key))
            if v is None:
                v = velocity[(layer.name, key)] = net.be.xp.zeros_like(w)  # shape of w
            sgd.sgd_momentum_update(w, dw, v, lr=lr, momentum=momentum, weight_decay=weight_decay)
        return loss
    return step


def torch_train_step(model, torch):
    opt = torch.optim.SGD(model.parameters(), **SGD_HP)
    ce = torch.nn.functional.cross_entropy

    def step(xt, lt):
        opt.zero_grad()
        loss = ce(model(xt), lt)
        loss.backward()
        opt.step()
        return float(loss.detach())  # the scalar without autograd (torch warns on a tensor that requires grad)
    return step


def child_time(spec, framework, threads, wait_idle=0):
    """Build, warm up, time; return a dict of seconds and memory."""
    import numpy as np  # noqa: F401
    net = build_net(spec["model"], **build_kw(spec))
    x, labels = make_batch(net, spec["batch"])
    train = spec["mode"] == "train"
    if framework == "rawcnn":
        step = rawcnn_train_step(net)
        fn = (lambda: step(x, labels)) if train else (lambda: net.forward(x, train=False))
        if train and hasattr(net, "reuse_buffers"):  # kept activation and gradient buffers, as train()
            net.reuse_buffers(True)                  # uses them (builds before issue 14's item 3: none)
        if not train and hasattr(net, "streaming"):  # test time: outputs in two alternating buffers, as
            net.streaming().__enter__()              # predict() runs every batch after its first (earlier builds:
                                                     # fresh arrays)
    else:
        import torch
        torch.set_num_threads(threads)
        import torch_peer
        model = torch_peer.peer_from_net(net)  # shares rawcnn's weight arrays: no second copy
        del net
        xt, lt = torch.from_numpy(x), torch.from_numpy(labels)
        if train:
            model.train()
            step = torch_train_step(model, torch)
            fn = lambda: step(xt, lt)  # noqa: E731
        else:
            model.eval()

            def fn():
                with torch.no_grad():
                    model(xt)
    for _ in range(2 if train else 1):  # a training step's first run also creates the momentum
        fn()
    if wait_idle:
        common.wait_for_idle(wait_idle)
    rss_before, build_peak = common.rss_mb(), common.hwm_mb()
    reset = common.reset_peak_rss()
    stat0 = common.cpu_stat()
    t = common.time_it(fn, repeats=spec["repeats"], warmup=0)
    steal = common.steal_share(stat0, common.cpu_stat())
    step_peak = common.hwm_mb() if reset else None
    return dict(seconds=t.seconds, others=t.others, rss_before_mb=rss_before, build_peak_mb=build_peak,
                step_peak_mb=step_peak, own_peak_mb=max(build_peak, step_peak or 0) if build_peak else None,
                huge_mb=common.anon_huge_mb(), rss_after_mb=common.rss_mb(), steal=steal)


def child_check(spec, torch_ok):
    """Correctness before timing: rawcnn vs the torch peer (or vs the reference backend)."""
    import numpy as np
    model_name, train = spec["model"], spec["mode"] == "train"
    lines = []
    if torch_ok:
        import torch

        import torch_peer
        net = build_net(model_name, **build_kw(spec))
        x, labels = make_batch(net, 4, seed=2)
        model = torch_peer.peer_from_net(net, share=False)
        xt, lt = torch.from_numpy(x), torch.from_numpy(labels)
        what = "rawcnn vs torch"
    else:
        small = SMALL_INPUT[model_name]
        kw = dict(input_shape=(3, small, small), **build_kw(spec))
        net = build_net(model_name, **kw)
        ref = build_net(model_name, **kw).to("reference")
        x, labels = make_batch(net, 2, seed=2)
        what = f"rawcnn cpu vs reference at {small}x{small}"
    if not train:
        logits = net.forward(x)
        want = model.eval()(xt).detach().numpy() if torch_ok else ref.forward(x)
        lines.append(f"check {spec['model']} forward, {what}: {common.fmt_diff('logits', logits, want)}")
        return lines
    # training: dropout off in both so that both compute the same function
    for l in net.layers:
        if l.kind == "Dropout":
            l.p = 0.0
    from rawcnn.engine.layers import SoftmaxCrossEntropy
    ce = SoftmaxCrossEntropy()
    logits = net.forward(x, train=True)
    loss = ce.forward(logits, labels)
    net.backward(ce.backward())
    grads = {(l.name, k): g for l, k, _, g in net.parameters()}
    if torch_ok:
        model.eval()
        out = model(xt)
        tloss = torch.nn.functional.cross_entropy(out, lt)
        tloss.backward()
        want_logits, want_loss = out.detach().numpy(), float(tloss.detach())
        want_grads = {(n, "w" if a == "weight" else "b"): getattr(m, a).grad.numpy()
                      for n, m in model.named_children() if hasattr(m, "weight") for a in ("weight", "bias")}
    else:
        for l in ref.layers:
            if l.kind == "Dropout":
                l.p = 0.0
        ref_ce = SoftmaxCrossEntropy().to("reference")
        want_logits = ref.forward(x, train=True)
        want_loss = ref_ce.forward(want_logits, labels)
        ref.backward(ref_ce.backward())
        want_grads = {(l.name, k): g for l, k, _, g in ref.parameters()}
    lines.append(f"check {spec['model']} training step, {what} (dropout off): "
                 f"{common.fmt_diff('logits', logits, want_logits)}; loss {loss:.6f} vs {want_loss:.6f}")
    worst = max(((common.diff(grads[k], want_grads[k]), k) for k in grads), key=lambda t: t[0][1])
    (err, rel), (lname, key) = worst
    lines.append(f"  gradients of all {len(grads)} parameters: worst {lname}.{key} max abs {err:.2e}, rel {rel:.2e}")
    if torch_ok:  # one SGD-momentum update from a nonzero velocity, kernel vs torch.optim.SGD
        import torch
        worst_u = (0.0, 0.0), None
        for (lname, key), g in grads.items():
            w0 = net[lname].params[key]
            v0 = np.random.default_rng(3).standard_normal(w0.shape).astype(np.float32) * 1e-3  # shape of w
            w, v = w0.copy(), v0.copy()
            net.be.sgd.sgd_momentum_update(w, g, v, **SGD_HP)
            # torch keeps buf = -v/lr (v = -lr*buf): the same state in its own scale
            p = torch.nn.Parameter(torch.tensor(w0))
            p.grad = torch.tensor(g)
            opt = torch.optim.SGD([p], **SGD_HP)
            opt.state[p]["momentum_buffer"] = torch.tensor(-v0 / SGD_HP["lr"])
            opt.step()
            d = common.diff(w, p.detach().numpy())
            if d[1] >= worst_u[0][1]:
                worst_u = d, f"{lname}.{key}"
        lines.append(f"  one SGD-momentum update vs torch.optim.SGD: worst {worst_u[1]} max abs "
                     f"{worst_u[0][0]:.2e}, rel {worst_u[0][1]:.2e}")
    return lines


def idle_then_monitor(wait_idle):
    """Wait (at most wait_idle s) for the CPUs to be free, then start watching other processes."""
    if wait_idle:
        common.wait_for_idle(wait_idle)
    return common.OtherLoad().start()


def child_profile(bench, framework, threads, wait_idle=0):
    """Per-layer forward and backward seconds of a training benchmark's step (custom-train by default)."""
    spec = BENCHES[bench]
    net = build_net(spec["model"], **build_kw(spec))
    x, labels = make_batch(net, spec["batch"])
    names = net.names()
    fwd, bwd = {n: [] for n in names}, {n: [] for n in names}
    if framework == "rawcnn":
        extra, others = _profile_rawcnn(net, x, labels, fwd, bwd, wait_idle)
    else:
        model = _torch_peer(net, threads)
        del net
        extra, others = _profile_torch(model, x, labels, fwd, bwd, wait_idle)
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return dict(layers=[(n, med(fwd[n]), med(bwd[n])) for n in names], extra=extra, others=others)


def _profile_rawcnn(net, x, labels, fwd, bwd, wait_idle):
    """child_profile's rawcnn half: appends each layer's forward and backward seconds to fwd[name] and
    bwd[name], PROFILE_REPEATS times. Returns (extra timings, other processes' load)."""
    import numpy as np

    from rawcnn.engine.layers import SoftmaxCrossEntropy
    extra = {}
    if hasattr(net, "reuse_buffers"):  # kept buffers, as train() and the timed step use them
        net.reuse_buffers(True)
    step = rawcnn_train_step(net)
    step(x, labels)
    step(x, labels)
    ce = SoftmaxCrossEntropy()
    conv1 = net.layers[0]
    conv1.need_dx = False  # training computes no gradient w.r.t. the images
    mon = idle_then_monitor(wait_idle)
    for _ in range(PROFILE_REPEATS):
        a = x
        for l in net.layers:
            t0 = time.perf_counter()
            a = l.forward(a, train=True)
            fwd[l.name].append(time.perf_counter() - t0)
        ce.forward(a, labels)
        d = ce.backward()
        for l in reversed(net.layers):
            t0 = time.perf_counter()
            d = l.backward(d)
            bwd[l.name].append(time.perf_counter() - t0)
    others = mon.stop()
    conv1.need_dx = True
    dy = np.ones((len(x), *conv1.output_shape(net.input_shape)), np.float32)  # (N, F, OH, OW)
    extra["conv1 backward WITH dx (not needed in training)"] = common.time_it(
        lambda: conv1.backward(dy), repeats=3).median
    velocity = {(l.name, k): np.zeros_like(w) for l, k, w, _ in net.parameters()}

    def sgd_all():
        for l, k, w, g in net.parameters():
            net.be.sgd.sgd_momentum_update(w, g, velocity[(l.name, k)], **SGD_HP)
    extra["SGD update, all parameters"] = common.time_it(sgd_all, repeats=3).median
    return extra, others


def _torch_peer(net, threads):
    """The PyTorch module with net's layers and weights, in training mode, on `threads` threads."""
    import torch
    torch.set_num_threads(threads)
    import torch_peer
    return torch_peer.peer_from_net(net).train()


def _profile_torch(model, x, labels, fwd, bwd, wait_idle):
    """child_profile's PyTorch half: appends each module's forward and backward seconds in the real
    training step to fwd[name] and bwd[name], PROFILE_REPEATS times after 2 untimed steps. Returns
    (extra timings, other processes' load)."""
    import torch
    extra = {}
    xt, lt = torch.from_numpy(x), torch.from_numpy(labels)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    # timestamps from module hooks inside the real training step: a module's forward runs
    # between its pre and post forward hooks; backward runs module by module in reverse, so
    # module i's backward lasts from its backward pre-hook to module i-1's (to the end of
    # loss.backward() for the first module)
    stamp = {}
    mods = list(model.named_children())
    for n, m in mods:
        m.register_forward_pre_hook(lambda mod, inp, n=n: stamp.__setitem__(("f0", n), time.perf_counter()))
        m.register_forward_hook(lambda mod, inp, out, n=n: stamp.__setitem__(("f1", n), time.perf_counter()))
        m.register_full_backward_pre_hook(lambda mod, dout, n=n: stamp.__setitem__(("b0", n), time.perf_counter()))
    opt = torch.optim.SGD(model.parameters(), **SGD_HP)
    ce = torch.nn.functional.cross_entropy
    sgd_s = []
    for i in range(2 + PROFILE_REPEATS):
        if i == 2:
            mon = idle_then_monitor(wait_idle)
        opt.zero_grad()
        loss = ce(model(xt), lt)
        loss.backward()
        t_end = time.perf_counter()
        opt.step()
        if i < 2:
            continue
        sgd_s.append(time.perf_counter() - t_end)
        for j, (n, _) in enumerate(mods):
            fwd[n].append(stamp[("f1", n)] - stamp[("f0", n)])
            later = stamp[("b0", mods[j - 1][0])] if j > 0 else t_end
            bwd[n].append(later - stamp[("b0", n)])
    others = mon.stop()
    extra["SGD update, all parameters"] = sorted(sgd_s)[len(sgd_s) // 2]
    return extra, others


def child_main(args):
    common.setup_threads(args.threads)
    if args.framework == "torch":  # the parent's --denormals, as rawcnn's children get it from the variable
        torch = common.try_import_torch()
        if torch is not None:
            torch.set_flush_denormal(os.environ.get(DENORMALS_ENV) == "1")
    spec = BENCHES.get(args.bench)
    if args.child == "info":
        torch = common.try_import_torch() if args.framework == "torch" else None
        if torch is not None:
            torch.set_num_threads(args.threads)
        import numba  # noqa: F401
        for line in common.machine_description(torch, no_torch=args.framework != "torch"):
            print(line)
        out = {"torch": torch is not None}
    elif args.child == "time":
        out = child_time(spec, args.framework, args.threads, args.wait_idle)
    elif args.child == "check":
        for line in child_check(spec, args.framework == "torch"):
            print(line)
        out = {}
    else:
        out = child_profile(args.bench or "custom-train", args.framework, args.threads, args.wait_idle)
    print("RESULT " + json.dumps(out))


# -- parent --------------------------------------------------------------------------------------
def run_child(kind, bench, framework, threads, env, wait_idle=0):
    """Run one child; return (its RESULT dict, its ru_maxrss in MiB, its other output lines)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--framework", framework,
           "--threads", str(threads), "--wait-idle", str(wait_idle)] + (["--bench", bench] if bench else [])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    text = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    lines = text.splitlines()
    result = [json.loads(l[7:]) for l in lines if l.startswith("RESULT ")]
    other = [l for l in lines if not l.startswith("RESULT ")]
    if p.returncode != 0 or not result:
        raise RuntimeError(f"child {' '.join(cmd[2:])} failed (exit {p.returncode}):\n" + "\n".join(other[-30:]))
    return result[0], usage.ru_maxrss / 1024, other


DENORMALS_ENV = "RAWCNN_FLUSH_DENORMALS"  # kernels/cpu/denormals.py applies it when the CPU tier is imported
HEAP_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2 ** 40)}


def blas_envs(choice):
    """[(label, environment)] for the rawcnn children."""
    as_is = dict(os.environ)
    unset = {k: v for k, v in os.environ.items() if k not in common.BLAS_ENV}
    if choice == "as-is" or (choice == "both" and as_is == unset):
        return [(common.blas_env(), as_is)]
    if choice == "unset":
        return [("OPENBLAS_* unset", unset)]
    return [(common.blas_env(), as_is), ("OPENBLAS_* unset", unset)]


def malloc_envs(choice):
    """[(label, extra variables)]: glibc's default malloc, and/or one that keeps freed memory.

    By default glibc serves every block over 32 MiB with a fresh mmap and unmaps it on free; on a
    VM whose balloon driver reports free pages to the host, touching such memory again costs
    about 1-2 ms per MiB, far more than the work on it. MALLOC_MMAP_MAX_=0 with a huge
    MALLOC_TRIM_THRESHOLD_ serves everything from the heap and keeps it (the peak RSS rises).
    """
    default = ("malloc default", {})
    heap = ("malloc heap (MALLOC_MMAP_MAX_=0, no trim)", HEAP_MALLOC)
    return {"default": [default], "heap": [heap], "both": [default, heap]}[choice]


def _time_round(args, name, envs, mvars, order):
    """One round of a workload under one malloc setting: a torch child (when "torch" is in order) and a rawcnn
    child per BLAS setting, in `order`. Returns (torch (Timing, peak RSS, extra) or None,
    [(BLAS label, Timing, peak RSS, extra)])."""
    tt, mine = None, []
    for who in order:
        if who == "torch":
            res, maxrss, _ = run_child("time", name, "torch", args.threads, {**envs[0][1], **mvars}, args.wait_idle)
            tt = (common.Timing(res.pop("seconds"), res.pop("others")), maxrss, res)
        else:
            for label, env in envs:
                res, maxrss, _ = run_child("time", name, "rawcnn", args.threads, {**env, **mvars}, args.wait_idle)
                mine.append((label, common.Timing(res.pop("seconds"), res.pop("others")), maxrss, res))
    return tt, mine


def run_benches(args, torch_ok):
    rows = common.Rows(args.json, meta=dict(threads=args.threads, cpu=common.cpu_name()))
    envs = blas_envs(args.blas_env)
    summary = []
    for name in args.only:
        spec = BENCHES[name]
        _, _, lines = run_child("check", name, "torch" if torch_ok else "rawcnn", args.threads, envs[0][1])
        for line in lines:
            rows.note(line)
        shape = f"{spec['model']} batch {spec['batch']} {spec['mode']}"
        for mlabel, mvars in malloc_envs(args.malloc):
            ratios = {label: [] for label, _ in envs}
            for r in range(args.rounds):
                # the order alternates, so that a drift of the host favours neither framework
                order = (("torch", "rawcnn") if r % 2 == 0 else ("rawcnn", "torch")) if torch_ok else ("rawcnn",)
                tt, mine = _time_round(args, name, envs, mvars, order)
                rnd = dict(round=r + 1, rounds=args.rounds, first=order[0])
                for label, t, maxrss, res in mine:
                    ratio = tt[0].median / t.median if tt else None
                    ratios[label].append(ratio)
                    rows.add(name, "rawcnn", shape, t, spec["batch"] / t.median, "img/s", ratio,
                             tail=mem_tail(maxrss, res), env=label, malloc=mlabel, peak_rss_mb=maxrss, **rnd, **res)
                    rows.note(f"rawcnn row above: {label}, {mlabel}" + _round_note(rnd))
                if tt:
                    rows.add(name, "torch", shape, tt[0], spec["batch"] / tt[0].median, "img/s",
                             tail=mem_tail(tt[1], tt[2]), env="torch (MKL/oneDNN)", malloc=mlabel,
                             peak_rss_mb=tt[1], **rnd, **tt[2])
                    rows.note(f"torch row above: {mlabel}" + _round_note(rnd))
            if args.rounds > 1 and torch_ok:
                summary += [f"{name:<14} {mlabel[:12]:<12} {label[:40]:<40} rounds " + " ".join(f"{v:.2f}" for v in rs)
                            + f"  median {statistics.median(rs):.2f}x" for label, rs in ratios.items()]
    if summary:
        rows.note("ratio per round (torch ms / rawcnn ms, the round's two children one after the other) and "
                  "their median:")
        for line in summary:
            rows.note(line)
    rows.save()


def _round_note(rnd):
    if rnd["rounds"] == 1:
        return ""
    return f", round {rnd['round']} of {rnd['rounds']} ({rnd['first']} first)"


def mem_tail(maxrss, res):
    step, huge, steal = res.get("step_peak_mb"), res.get("huge_mb"), res.get("steal")
    return (f"  peak RSS {maxrss:6.0f} MB" + (f" (during steps {step:6.0f} MB)" if step else "")
            + (f", huge pages {huge:5.0f} MB" if huge is not None else "")
            + (f", steal {steal * 100:.0f}%" if steal is not None else ""))


def run_profile(args, torch_ok):
    label, env = blas_envs(args.blas_env)[-1]
    mlabel, mvars = malloc_envs(args.malloc)[-1]
    env = (label, {**env, **mvars})
    spec = BENCHES[args.profile]
    print(f"-- profile of {args.profile} ({spec['model']}, batch {spec['batch']}); rawcnn with {label}; both with "
          f"{mlabel}; median of {PROFILE_REPEATS} runs, ms --")
    mine, _, _ = run_child("profile", args.profile, "rawcnn", args.threads, env[1], args.wait_idle)
    theirs = (run_child("profile", args.profile, "torch", args.threads, env[1], args.wait_idle)[0]
              if torch_ok else None)
    print(f"{'layer':<10} {'rawcnn fwd':>11} {'torch fwd':>10} {'rawcnn bwd':>11} {'torch bwd':>10}")
    tot = [0.0] * 4
    for i, (n, f, b) in enumerate(mine["layers"]):
        tf_, tb = (theirs["layers"][i][1], theirs["layers"][i][2]) if theirs else (float("nan"),) * 2
        vals = (f, tf_, b, tb)
        tot = [a + v for a, v in zip(tot, vals, strict=True)]
        print(f"{n:<10} {f * 1e3:11.1f} {tf_ * 1e3:10.1f} {b * 1e3:11.1f} {tb * 1e3:10.1f}")
    print(f"{'total':<10} {tot[0] * 1e3:11.1f} {tot[1] * 1e3:10.1f} {tot[2] * 1e3:11.1f} {tot[3] * 1e3:10.1f}")
    for who, res in (("rawcnn", mine), ("torch", theirs)):
        if res and res.get("others") is not None:
            print(f"other processes used {res['others'] * 100:.0f}% of the CPUs during the {who} profile")
    for k, v in mine["extra"].items():
        other = theirs["extra"].get(k) if theirs else None
        print(f"rawcnn {k}: {v * 1e3:.1f} ms" + (f"   torch: {other * 1e3:.1f} ms" if other else ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", default=list(BENCHES), choices=list(BENCHES))
    ap.add_argument("--profile", nargs="?", const="custom-train", default=None, metavar="BENCH",
                    choices=[k for k, v in BENCHES.items() if v["mode"] == "train"],
                    help="per-layer times of a training step (default custom-train)")
    ap.add_argument("--blas-env", default="both", choices=("both", "as-is", "unset"),
                    help="run rawcnn with OPENBLAS_CORETYPE/L2_SIZE as they are, unset, or both")
    ap.add_argument("--malloc", default="default", choices=("default", "heap", "both"),
                    help="glibc malloc as it is, or serving big blocks from a heap it keeps (see malloc_envs)")
    ap.add_argument("--threads", type=int, default=common.default_threads())
    ap.add_argument("--no-torch", action="store_true", help="time rawcnn alone even when torch is installed")
    ap.add_argument("--json", default=None, help="append the rows as JSON lines to this file")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S",
                    help="before each timing wait up to S seconds for other processes to leave the CPUs")
    ap.add_argument("--denormals", default="flush", choices=("flush", "keep"),
                    help="subnormal floats flushed to zero in both frameworks (as `rawcnn` and train() run), or kept")
    ap.add_argument("--rounds", type=int, default=1, metavar="R",
                    help="time each workload and malloc mode R times, rawcnn and torch one after the other in "
                         "each round (the order alternating), and print each round's ratio and their median")
    ap.add_argument("--child", choices=("info", "time", "check", "profile"), help=argparse.SUPPRESS)
    ap.add_argument("--bench", help=argparse.SUPPRESS)
    ap.add_argument("--framework", choices=("rawcnn", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args)
    # the parent imports neither numpy nor torch: a child's ru_maxrss starts at the parent's peak
    # RSS (Linux copies it at exec), so the parent must stay small; the header comes from a child
    common.setup_threads(args.threads)
    os.environ[DENORMALS_ENV] = "1" if args.denormals == "flush" else "0"  # every child inherits it
    info, _, lines = run_child("info", None, "rawcnn" if args.no_torch else "torch", args.threads, dict(os.environ))
    torch_ok = info["torch"]
    print("== rawcnn model benchmarks" + (" (profile)" if args.profile else "") + " ==")
    for line in lines:
        print(line)
    print(f"subnormal floats: {'flushed to zero' if args.denormals == 'flush' else 'kept'} in both frameworks "
          f"({DENORMALS_ENV}={os.environ[DENORMALS_ENV]}; torch.set_flush_denormal({args.denormals == 'flush'}))")
    print("vs torch = torch seconds / rawcnn seconds (> 1: rawcnn faster); peak RSS = ru_maxrss of the "
          "benchmark's own process; during steps = VmHWM over the timed steps only")
    if args.profile:
        run_profile(args, torch_ok)
    else:
        run_benches(args, torch_ok)


if __name__ == "__main__":
    main()
