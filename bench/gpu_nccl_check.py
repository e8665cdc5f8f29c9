"""GPU check of the NCCL gradient path of rawcnn.training.distributed (one GPU: a 1-rank NCCL communicator).

    python bench/gpu_nccl_check.py          exit 0: passed or skipped (no GPU / cupy / NCCL), 1: failed

CI has no GPU, so this is the only place the NCCL path runs; bench/gpu_check.py calls it on a lent
GPU machine. It needs cupy with NCCL but not mpi4py: the 1-rank communicator is bootstrapped over
a stand-in for MPI_COMM_WORLD. Checks:
    1  the reducer alone: known gradients, small (bucketed) and large (in place), come back from a
       1-rank allreduce unchanged, in buckets of 1 KB so that several buckets are used
    2  one data-parallel training step (rawcnn.training.distributed.Distributed.train_step on the cuda
       backend, NCCL reducer, dropout drawn for the whole batch) equals the plain one-process step:
       gradients max rel diff <= 1e-5 (float32), same loss
With several GPUs and mpi4py, `mpiexec -n G python bench/gpu_nccl_check.py --ranks` runs check 2
with G ranks (one GPU each) instead.
"""
import os
import sys
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

SPEC = {"name": "tiny", "input": [3, 16, 16], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 8, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "LRN", "name": "norm1", "size": 5},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 64},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Dropout", "name": "drop1", "p": 0.5},
    {"type": "Linear", "name": "fc2", "out_features": 2}]}


class OneRank:
    """MPI_COMM_WORLD of a single process, for the calls rawcnn.training.distributed makes."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def Bcast(self, buf, root=0):
        pass

    def Allgather(self, send, recv):
        recv[...] = np.asarray(send).reshape(recv.shape)

    def Allreduce(self, send, recv, op=None):
        pass

    def Barrier(self):
        pass

    def Abort(self, code=1):
        os._exit(code)


def skip_reason():
    try:
        import cupy
        from cupy.cuda import nccl
    except Exception as e:  # ImportError, or a CUDA/NCCL library that does not load
        return f"cupy with NCCL is not available ({type(e).__name__}: {e})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no GPU"
        nccl.get_version()
    except Exception as e:
        return f"no usable GPU / NCCL ({type(e).__name__}: {e})"
    return None


def check_reducer(dist):
    import cupy
    red = dist.reducer
    red.bucket_bytes = 1024  # several buckets and one in-place gradient at this size
    rng = np.random.default_rng(0)
    layers = [SimpleNamespace(name=f"l{i}", trainable=True,
                              grads={"w": cupy.asarray(rng.standard_normal(n).astype(np.float32)),
                                     "b": cupy.asarray(rng.standard_normal(3).astype(np.float32))})
              for i, n in enumerate((10, 300, 50, 2000))]
    want = {(l.name, k): cupy.asnumpy(g) for l in layers for k, g in l.grads.items()}
    red.begin(SimpleNamespace(be=SimpleNamespace(xp=cupy)))
    for l in layers:
        red.add(l)
    red.finish()
    cupy.cuda.get_current_stream().synchronize()
    bad = [f"{l.name}/{k}" for l in layers for k, g in l.grads.items()
           if not np.array_equal(cupy.asnumpy(g), want[(l.name, k)])]
    red.bucket_bytes = 25 * 2**20
    what = "1-rank NCCL allreduce of 8 gradients in 1 KB buckets returns them unchanged"
    return not bad, what + (f": {bad}" if bad else "")


def check_step(dist):
    import cupy

    from rawcnn.engine.checkpoint import dropout_rng_states, set_dropout_rng_states
    from rawcnn.engine.gradcheck import max_diff
    from rawcnn.engine.layers import SoftmaxCrossEntropy
    from rawcnn.engine.models import build
    net = build(SPEC, seed=0, weight_std=0.1).to("cuda")
    crit = SoftmaxCrossEntropy().to(net.be)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 3, 16, 16)).astype(np.float32)  # (B, C, H, W)
    y = rng.integers(0, 2, 12).astype(np.int64)  # (B,)
    masks = dropout_rng_states(net)
    loss_one = crit.forward(net.forward(x, train=True), y)
    net.backward(crit.backward(), input_grad=False)
    one = {(l.name, k): cupy.asnumpy(g) for l, k, _, g in net.parameters(trainable_only=True)}
    set_dropout_rng_states(net, masks)
    tr = SimpleNamespace(net=net, crit=crit, train_split=SimpleNamespace(x=x, y=y), augment=None,
                         to_input=lambda b: b, batch_size=12)
    loss, _, where = dist.train_step(tr, np.arange(12))
    cupy.cuda.get_current_stream().synchronize()
    diff = max(max_diff(cupy.asnumpy(g), one[(l.name, k)]) for l, k, _, g in net.parameters(trainable_only=True))
    ok = diff <= 1e-5 and where == "" and abs(loss - loss_one) <= 1e-5 * abs(loss_one)
    return ok, (f"data-parallel step on {dist.size} rank(s) with NCCL vs one process: gradients max rel diff "
                f"{diff:.2e} (<= 1e-5), loss {loss:.6f} vs {loss_one:.6f}")


def main():
    reason = skip_reason()
    if reason:
        print(f"gpu_nccl_check: SKIPPED: {reason}")
        return 0
    from rawcnn.training.distributed import Distributed, from_environment
    if "--ranks" in sys.argv:
        dist = from_environment("cuda")
        checks = [check_step]
    else:
        dist = Distributed(OneRank(), "cuda")
        checks = [check_reducer, check_step]
    failed = 0
    for check in checks:
        try:
            ok, what = check(dist)
        except Exception as e:  # report, do not hide: the path has never run anywhere else
            ok, what = False, f"{check.__name__} raised {type(e).__name__}: {e}"
        failed += not ok
        if dist.rank == 0:
            print(f"gpu_nccl_check: {'PASS' if ok else 'FAIL'}: {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
