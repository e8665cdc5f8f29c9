"""Data-parallel training over processes and machines: MPI (mpi4py) on CPUs, NCCL on GPUs.

Shapes: R ranks, r this rank; n the rows of one global batch (the batch size B, fewer for an
epoch's last); [lo, hi) this rank's rows of it, lo = r * n // R, hi = (r + 1) * n // R.

Synchronous data-parallel SGD, one step on every rank (`mpiexec -n R rawcnn train ...`):

    order = rng_shuffle.permutation(N)           the same seed: the same order on every rank
    idx = order[i:i+B][lo:hi]                    this rank's rows, read from the HDF5 file
    transforms, masks = draw for all n rows      augmentation and dropout from the shared
                                                 generators, then this rank keeps [lo:hi]
    logits = forward(x[idx])
    dlogits = (p - onehot) * (hi - lo) / n / (hi - lo) = (p - onehot) / n     (the global mean)
    backward, top layer first; a layer's grads join a bucket as soon as they exist, and a full
        bucket starts a non-blocking allreduce (sum) while the layers below run their backward
    wait for every bucket: every rank holds sum over ranks = one process's gradient
    the fused SGD update, the same on every rank

So R ranks compute what one process computes, except for the order of the float sums over the
batch: per step they agree to float rounding (the test allows 1e-5 relative in float32 over 3
epochs of a tiny net, 1e-12 in float64), but SGD amplifies the difference over a real run (the
custom model, 2 epochs: train loss 1.86588 vs 1.86602 after epoch 1, final biases up to 1.6e-1
relative apart). Every generator advances the same way on every rank, so rank 0's checkpoint is the
run's whole state and resumes with any R.

With --micro-batches M (MicroBatches below) the bits do not depend on R. Shapes: M micro-batches,
q = M / R per rank; micro-batch m is rows share(n, M, m) of the global batch.

    for m in this rank's [r*q, (r+1)*q):          forward, loss, backward of micro-batch m alone,
        dlogits = (p - onehot) * n_m / n / n_m    augmentation and dropout rows from the shared
                                                  draws of all n rows (one draw per step)
    g(lo, hi) = g(lo, mid) + g(mid, hi), mid = (lo + hi) // 2      the fixed pairwise tree
    this rank computes the subtree g(r*q, (r+1)*q); the ranks combine the levels above it with
    point-to-point messages (the right child's owner sends to the left's), then rank 0 broadcasts

The same micro-batch gives the same gradient bits on any rank (the kernels do not depend on the
thread count: rawcnn/engine/determinism.py), and the tree is the same for any R, so 1, 2, 4 ... ranks give
the same weights, momentum, losses and checkpoints. A rank's block must be a node of the tree:
R divides M and is a power of two (or equals M); check_micro_batches refuses the rest. An empty
micro-batch (n < M) is a missing leaf, skipped in the same way by every R (no "+ 0", which would
turn a -0.0 into +0.0). In one process M > 1 computes the same tree; M = 1 is the plain step.

Validation runs in fixed global blocks of B rows (one process's batches: a row's logits can
depend on the other rows of its batch, through the GEMMs' shapes), rank r taking blocks
share(blocks, R, r); each block's loss sum goes into its own slot, the ranks' vectors are summed
(every slot has one non-zero contributor: exact) and the slots added in block order, as one
process adds them. So validation gives one process's bits with or without --micro-batches.

Files and logs come from rank 0 alone. A rank that raises prints one line naming itself and aborts
the whole job (MPI_Abort); a non-finite loss on any rank stops every rank at the same step, named.
Ctrl-C (mpiexec forwards SIGINT to every rank) only raises a flag during training; the flag rides
on the next step's or validation's collective, so every rank stops at the same step, before its
backward, and rank 0 says which epoch last.h5 holds. A second Ctrl-C on a rank aborts the job.
On the `cuda` backend the buckets are summed on the GPU by NCCL (cupy.cuda.nccl), its communicator
bootstrapped over MPI; everything else is shared with the MPI path.
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

import h5py
import numpy as np

from kernels import to_numpy
from rawcnn.data import load_dataset
from rawcnn.data.dataset import PER_IMAGE, SPLITS
from rawcnn.data.records import DataError
from rawcnn.engine.checkpoint import dropout_rng_states, set_dropout_rng_states
from rawcnn.files.validate import InputError, check_storage

BUCKET_MB = 25.0  # PyTorch DDP's default: large enough to amortise latency, small enough to overlap


def share(n, size, rank):
    """This rank's rows [lo, hi) of n rows split into `size` contiguous parts (sizes differ by <= 1)."""
    return rank * n // size, (rank + 1) * n // size


def launched_size():
    """The number of ranks mpiexec started (MPICH / Intel MPI, Open MPI, Slurm), 1 without mpiexec."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        if os.environ.get(var):
            return int(os.environ[var])
    return 1


class Single:
    """One process: the no-op communicator (train.py keeps its plain one-process path)."""

    rank, size, is_root = 0, 1, True

    def deferred_interrupts(self):
        return contextlib.nullcontext()

    def fail(self, exc, tb=None):
        """Nothing: with one process there are no other ranks to stop (the caller reports exc)."""

    def Bcast(self, buf, root=0):
        pass

    def abort(self, code=1):
        sys.exit(code)


class Distributed:
    """R ranks of one run: the communicator, the gradient reducer, the sharded step and validation."""

    def __init__(self, comm, backend_name="cpu", bucket_mb=BUCKET_MB):
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        self.is_root = self.rank == 0
        self.backend_name = backend_name
        if backend_name == "cuda":
            self.reducer = NCCLReducer(self, bucket_mb)
        else:
            self.reducer = MPIReducer(comm, bucket_mb)
        self.sigint = False  # set by the SIGINT handler of deferred_interrupts()

    def __repr__(self):
        return f"Distributed(rank {self.rank} of {self.size}, {self.reducer!r})"

    # -- the training step ---------------------------------------------------------------------
    def train_step(self, tr, idx):
        """Forward and backward of this rank's rows of one global batch; gradients summed over ranks.

        tr: the Trainer; idx: (n,) int rows of the training split, the global batch in order.
        Returns (loss, correct, bad): the global batch's mean loss and correct count (as one process
        computes them), and '' or ' on rank r' naming the first rank whose loss was not finite; when
        the loss is not finite the backward is skipped (every rank sees the same numbers).
        """
        net, crit = tr.net, tr.crit
        n = idx.size
        lo, hi = share(n, self.size, self.rank)
        mine = idx[lo:hi] if hi > lo else idx[:1]  # a rank with no row runs one with weight 0
        xb, yb = read_rows(tr.train_split.x, mine), tr.train_split.y[mine]  # (n_r, ...), (n_r,)
        sel = slice(lo, hi) if hi > lo else slice(0, 1)
        if tr.augment is not None:  # the transforms of all n rows, as one process draws them
            xb = tr.augment.apply_all(xb, tr.augment.draw_all(n), sel)
        set_dropout_rows(net, (sel.start, sel.stop, n))
        try:
            logits = net.forward(tr.to_input(xb), train=True)  # (n_r, K)
        finally:
            set_dropout_rows(net, None)
        loss = crit.forward(logits, yb)
        right = int((net.be.xp.argmax(logits, axis=1) == crit.labels).sum())
        mine_n = hi - lo
        stats = np.array([loss * mine_n if mine_n else 0.0, right if mine_n else 0,
                          np.isfinite(loss) or not mine_n, self.sigint], dtype=np.float64)  # (4,)
        every = np.empty((self.size, 4), dtype=np.float64)  # (R, 4) one row per rank
        self.comm.Allgather(stats, every)
        if every[:, 3].any():  # Ctrl-C on some rank: every rank stops here, before the backward
            raise CollectiveInterrupt()
        bad = np.flatnonzero(every[:, 2] == 0)
        total = float(every[:, 0].sum()) / n
        if bad.size:
            return float("nan"), 0, f" on rank {int(bad[0])}"
        self.reducer.begin(net)
        net.backward(crit.backward(mine_n / n), input_grad=False, on_layer_grads=self.reducer.add)
        self.reducer.finish()
        return total, int(every[:, 1].sum()), ""

    def validate(self, tr, split=None):
        """Mean loss and accuracy over a split (default: validation), in one process's batches.

        The split is cut into fixed blocks of B rows [k*B, (k+1)*B) (one process's batches), rank r
        computes blocks share(blocks, R, r); every block's loss sum has its own slot, every row's
        score its own place, so the reduction adds zeros only and every rank gets one process's
        numbers bit for bit. split: a rawcnn.training.train.Split (e.g. the test split).
        """
        net, crit, xp = tr.net, tr.crit, tr.net.be.xp
        split = split if split is not None else tr.val_split
        x, y, B = split.x, split.y, tr.batch_size
        nb = -(-y.size // B)  # blocks
        k_lo, k_hi = share(nb, self.size, self.rank)
        # (nb + 3 + N,): each block's loss sum, correct, classes, each row's score, Ctrl-C
        sums = np.zeros(nb + 3 + y.size, dtype=np.float64)
        for k in range(k_lo, k_hi):
            i, j = k * B, min((k + 1) * B, y.size)
            logits = net.forward(tr.to_input(read_rows(x, np.arange(i, j))), train=False)  # (j - i, K)
            sums[k] = crit.forward(logits, y[i:j]) * (j - i)
            sums[nb] += int((xp.argmax(logits, axis=1) == crit.labels).sum())
            sums[nb + 1] = logits.shape[1]
            sums[nb + 2 + i:nb + 2 + j] = tr.hooks.scores(logits)  # the other ranks hold 0 there
        sums[-1] = self.sigint
        self.allreduce(sums)
        if sums[-1]:
            raise CollectiveInterrupt()
        tr.n_classes = int(round(sums[nb + 1] / min(self.size, nb)))  # every rank with a block wrote K
        total = 0.0
        for k in range(nb):  # in block order, as Trainer.validate adds them in one process
            total += float(sums[k])
        if split is tr.val_split:
            tr.val_auc = tr.hooks.auc(y, [sums[nb + 2:-1]])  # as one process computes it
        return total / y.size, float(sums[nb]) / y.size

    # -- small collectives ---------------------------------------------------------------------
    def allreduce(self, a):
        """Sum a float64 numpy array over ranks, in place."""
        from mpi4py import MPI  # optional: the mpi extra
        self.comm.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM)
        return a

    def Bcast(self, buf, root=0):
        self.comm.Bcast(buf, root=root)

    def barrier(self):
        self.comm.Barrier()

    # -- faults --------------------------------------------------------------------------------
    def deferred_interrupts(self):
        """A context in which SIGINT only sets self.sigint (checked at the next collective); a second
        SIGINT raises KeyboardInterrupt as usual, which aborts the job (install_excepthook)."""

        @contextlib.contextmanager
        def ctx():
            if threading.current_thread() is not threading.main_thread():
                yield
                return

            def handler(signum, frame):
                if self.sigint:
                    raise KeyboardInterrupt
                self.sigint = True

            old = signal.signal(signal.SIGINT, handler)
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, old)
        return ctx()

    def fail(self, exc, tb=None):
        """Print one line naming this rank and the error (then its traceback), stop every rank (MPI_Abort).

        The line goes first and the abort waits a second: mpiexec tears the job down as soon as one
        rank aborts, and what a rank wrote to stderr just before may not have been forwarded yet.
        """
        sys.stderr.write(f"rawcnn: rank {self.rank} of {self.size} failed: {type(exc).__name__}: {exc}; "
                         f"stopping all ranks\n")
        sys.stderr.flush()
        if tb is not None:
            traceback.print_exception(type(exc), exc, tb)
            sys.stderr.flush()
        time.sleep(1.0)
        self.abort(1)

    def abort(self, code=1):
        self.comm.Abort(code)

    def install_excepthook(self):
        """An uncaught exception on any rank prints its line and aborts the job instead of hanging it."""
        def hook(kind, exc, tb):
            if issubclass(kind, KeyboardInterrupt):
                self.abort(130)
            self.fail(exc, tb)
        sys.excepthook = hook


class CollectiveInterrupt(KeyboardInterrupt):
    """Ctrl-C seen by every rank at the same collective: the ranks stop together, no abort needed."""


# -- micro-batches: the same bits for any number of ranks -----------------------------------------
def micro_batch_rule_holds(M, R):
    """True when R ranks can each hold a whole branch of M micro-batches' pairwise tree: R divides M
    and is a power of two, or R == M (checked against the tree itself for every M < 300)."""
    return M % R == 0 and (R & (R - 1) == 0 or R == M)


def check_micro_batches(M, R):
    """Raise ValueError (one line naming both numbers) unless --micro-batches M suits R ranks."""
    if M is None:
        return
    if M < 1:
        raise ValueError(f"--micro-batches must be at least 1, got {M}")
    if not micro_batch_rule_holds(M, R):
        hint = R * -(-M // R) if R & (R - 1) == 0 else R
        raise ValueError(f"--micro-batches {M} cannot be shared by {R} ranks: the number of ranks must divide "
                         f"the number of micro-batches and be a power of two (or equal it), e.g. "
                         f"--micro-batches {hint}")


class _MicroStep:
    """One training step's state on this rank for MicroBatches.step: the rows it holds, the augmentation
    drawn for the whole global batch, the dropout generators' state every micro-batch starts from, and the
    per-micro-batch statistics (loss * n_m, correct, finite)."""

    def __init__(self, mb, tr, idx):
        self.mb, self.tr, self.idx, self.n = mb, tr, idx, idx.size
        n, M, lo, q = self.n, mb.M, mb.lo, mb.q
        self.a0, self.b0 = share(n, M, lo)[0], share(n, M, lo + q - 1)[1]  # this rank's rows [a0, b0)
        self.xr = read_rows(tr.train_split.x, idx[self.a0:self.b0])  # (b0 - a0, ...)
        self.yr = tr.train_split.y[idx[self.a0:self.b0]]
        self.t = tr.augment.draw_all(n) if tr.augment is not None else None  # every row's, on every rank
        self.weights = None
        if tr.hooks.balance == "weight":  # the global batch's normalisation, as one process's dlogits
            w = tr.hooks.class_weight  # (K,)
            self.weights = (w, n / w[tr.train_split.y[idx]].sum())
        self.drawn = dropout_rng_states(tr.net)  # each micro-batch's forward draws the n-row masks from here
        self.stats = np.zeros((q, 3), dtype=np.float64)  # per micro-batch: loss * n_m, correct, finite
        self.stats[:, 2] = 1
        self.keys = mb._grads(tr.net)

    def leaf(self, m):
        """Forward and backward of micro-batch m: its gradient share, or None when its loss is not finite."""
        tr, net, crit, n = self.tr, self.tr.net, self.tr.crit, self.n
        a, b = share(n, self.mb.M, m)
        set_dropout_rng_states(net, self.drawn)
        xb, yb = self.xr[a - self.a0:b - self.a0], self.yr[a - self.a0:b - self.a0]
        if self.t is not None:
            xb = tr.augment.apply_all(xb, self.t, slice(a, b))
        set_dropout_rows(net, (a, b, n))
        try:
            logits = net.forward(tr.to_input(xb), train=True)  # (n_m, K)
        finally:
            set_dropout_rows(net, None)
        loss = crit.forward(logits, yb)
        right = int((net.be.xp.argmax(logits, axis=1) == crit.labels).sum())
        self.stats[m - self.mb.lo] = loss * (b - a), right, np.isfinite(loss)
        if not np.isfinite(loss):
            return None  # the step is refused: its gradients are never used
        d = crit.backward((b - a) / n)  # (n_m, K) a share of the global mean's gradient
        if self.weights is not None:
            f = self.weights[0][np.asarray(yb)] * self.weights[1]  # (n_m,)
            d = d * net.be.xp.asarray(f[:, None], dtype=d.dtype)
        net.backward(d, input_grad=False)
        return self.mb._leaf(net, self.keys)

    def tree(self, lo_, hi_):
        """The sum of micro-batches [lo_, hi_) of this rank, added in a fixed pairwise tree (None: all empty)."""
        if self.mb._empty(self.n, lo_, hi_):
            return None
        if hi_ - lo_ == 1:
            return self.leaf(lo_)
        mid = (lo_ + hi_) // 2
        return self.mb._add(self.tree(lo_, mid), self.tree(mid, hi_))

    def idle_forward(self):
        """A rank without rows runs one forward of one row (output unused), so its dropout draws stay in step."""
        net = self.tr.net
        set_dropout_rows(net, (0, 1, self.n))
        try:
            net.forward(self.tr.to_input(read_rows(self.tr.train_split.x, self.idx[:1])), train=True)
        finally:
            set_dropout_rows(net, None)


class MicroBatches:
    """One training step as M fixed micro-batches whose gradients are summed in a fixed pairwise tree.

    dist: Single or Distributed (R ranks; R divides M, see check_micro_batches). This rank computes
    micro-batches [lo, lo + q), q = M / R, one forward and backward each, and sums them as the tree's
    subtree; the ranks then combine the levels above with Send/Recv and rank 0 broadcasts the total.
    Every rank ends with the same gradient bits, whatever R (module docstring). Flat buffers of all
    trainable gradients (P elements) are kept between steps: at most log2(q) + 2 of them on a rank,
    plus one for receiving. seconds_exchange accumulates the time spent combining over ranks.
    """

    TAG = 71

    def __init__(self, M, dist):
        check_micro_batches(M, dist.size)
        self.M, self.dist = int(M), dist
        self.q = self.M // dist.size
        self.lo = dist.rank * self.q
        self.free, self.recv, self.seconds_exchange, self.steps = [], None, 0.0, 0

    def __repr__(self):
        return f"MicroBatches({self.M} over {self.dist.size} rank(s))"

    # -- flat gradient buffers -----------------------------------------------------------------
    def _grads(self, net):
        return [(l, k) for l, k, _, _ in net.parameters(trainable_only=True)]

    def _take(self, xp, size, dtype):
        while self.free:
            b = self.free.pop()
            if b.size == size and b.dtype == dtype:
                return b
        return xp.empty(size, dtype=dtype)

    def _leaf(self, net, keys):
        """A flat copy of the gradients the last backward left (P,)."""
        xp = net.be.xp
        size = sum(l.params[k].size for l, k in keys)
        buf = self._take(xp, size, np.dtype(net.dtype))
        o = 0
        for l, k in keys:
            g = l.grads[k]
            buf[o:o + g.size] = g.reshape(-1)
            o += g.size
        return buf

    def _add(self, a, b):
        """Tree node: a + b (either may be None: an all-empty branch), in a's buffer."""
        if a is None or b is None:
            return a if b is None else b
        a += b  # elementwise: one float addition per element, no reduction order
        self.free.append(b)
        return a

    def _empty(self, n, lo, hi):
        """True when micro-batches [lo, hi) hold no row of a global batch of n (known on every rank)."""
        return share(n, self.M, lo)[0] == share(n, self.M, hi - 1)[1]

    # -- the step ------------------------------------------------------------------------------
    def step(self, tr, idx):
        """Forward and backward of this rank's micro-batches; gradients summed over all M in tree order.

        tr: the Trainer; idx: (n,) int rows of the training split, the global batch in order.
        Returns (loss, correct, bad): the global batch's mean loss (micro-batch sums added in order
        0..M-1, divided by n), the correct count, and '' or a phrase naming the first micro-batch
        (and rank) whose loss was not finite; then the gradients are left as they are.
        """
        run = _MicroStep(self, tr, idx)
        mine = run.tree(self.lo, self.lo + self.q)
        if run.b0 == run.a0:  # no row here: one forward of one row (output unused) draws the masks as the others do
            run.idle_forward()
        per = self._gather_stats(run.stats)  # (M, 3) in micro-batch order
        bad = np.flatnonzero(per[:, 2] == 0)
        if bad.size:
            m = int(bad[0])
            where = f" in micro-batch {m + 1} of {self.M}"
            return float("nan"), 0, (f" on rank {m // self.q}{where}" if self.dist.size > 1 else where)
        total = 0.0
        for m in range(self.M):  # the step's loss: micro-batch sums in order, on every rank
            total += float(per[m, 0])
        t0 = time.perf_counter()
        if self.dist.size > 1:
            mine = self._exchange(tr.net, run.n, mine)
        self.seconds_exchange += time.perf_counter() - t0
        o = 0
        for l, k in run.keys:  # the total into the gradients the optimizer reads
            g = l.grads[k]
            g[...] = mine[o:o + g.size].reshape(g.shape)
            o += g.size
        if mine is not self.recv:
            self.free.append(mine)
        self.steps += 1
        return total / run.n, int(per[:, 1].sum()), ""

    def _gather_stats(self, stats):
        """Every rank's (q, 3) statistics as one (M, 3) table in micro-batch order (and Ctrl-C on any rank
        stops every rank here, before the update)."""
        every = stats.reshape(1, -1)
        if self.dist.size > 1:
            flat = np.concatenate([stats.reshape(-1), [self.dist.sigint]])  # (3q + 1,)
            every = np.empty((self.dist.size, flat.size), dtype=np.float64)  # (R, 3q + 1)
            self.dist.comm.Allgather(flat, every)
            if every[:, -1].any():
                raise CollectiveInterrupt()
            every = every[:, :-1]
        return every.reshape(self.M, 3)

    def _exchange(self, net, n, mine):
        """The tree's levels above the ranks' blocks by Send/Recv (the right child's owner sends to the
        left child's, which adds), then rank 0's total broadcast: every rank returns the same bits."""
        xp, q, rank = net.be.xp, self.q, self.dist.rank
        comm = self.dist.comm
        host = xp is np
        size = sum(l.params[k].size for l, k in self._grads(net))
        dtype = np.dtype(net.dtype)
        if self.recv is None or self.recv.size != size or self.recv.dtype != dtype:
            self.recv = np.empty(size, dtype=dtype)  # (P,) on the host (MPI reads host memory)

        def node(lo_, hi_):
            """This rank's value of node [lo_, hi_) when it owns it (the rank of lo_), else None."""
            first, last = lo_ // q, (hi_ - 1) // q
            if first == last or not first <= rank <= last:
                return mine if first == last == rank else None
            mid = (lo_ + hi_) // 2
            left, right = node(lo_, mid), node(mid, hi_)
            if self._empty(n, mid, hi_):  # nothing comes from the right: every rank knows it
                return left
            if rank == mid // q:
                comm.Send(right if host else to_numpy(right), dest=first, tag=self.TAG)
                return None
            if rank == first:
                comm.Recv(self.recv, source=mid // q, tag=self.TAG)
                got = self.recv if host else xp.asarray(self.recv)
                if left is None:  # an empty left branch: the right's bits as they are
                    left = self._take(xp, size, dtype)
                    left[...] = got
                    return left
                left += got
            return left

        total = node(0, self.M)
        if rank == 0:
            out = total if total is not None else xp.zeros(size, dtype=dtype)
            buf = out if host else to_numpy(out)
        else:
            if mine is not None:
                self.free.append(mine)
            out, buf = None, self.recv
        comm.Bcast(buf, root=0)
        if out is None:  # the receive buffer itself on the host (step() copies it into the gradients)
            out = buf if host else xp.asarray(buf)
        return out


def set_dropout_rows(net, rows):
    """Tell every Dropout layer which rows (lo, hi, n) of the global batch its input holds (None: all)."""
    for layer in net.layers:
        if layer.kind == "Dropout":
            layer.rows = rows


def read_rows(x, idx):
    """Rows idx of x (a numpy array or ShardedImages), in idx's order: (len(idx), ...)."""
    return x[np.asarray(idx)]


# -- gradient reduction --------------------------------------------------------------------------
class MPIReducer:
    """Sums every trainable gradient over ranks in buckets, each started as soon as it is full.

    Net.backward calls add(layer) right after a layer's backward (top layer first). A gradient of
    at least the bucket size is reduced in place on its own; smaller ones are copied into a flat
    bucket. begin() before the backward, finish() after it: it starts the last bucket, waits for
    all and copies the sums back. seconds_wait / seconds_backward accumulate the time finish()
    spent waiting and the time from begin() to finish() (bench/bench_mpi.py reads them).
    """

    def __init__(self, comm, bucket_mb=BUCKET_MB):
        self.comm, self.bucket_bytes = comm, int(bucket_mb * 2**20)
        self.seconds_wait = self.seconds_backward = 0.0
        self.steps = 0

    def __repr__(self):
        return f"{type(self).__name__}(bucket {self.bucket_bytes / 2**20:g} MB)"

    def begin(self, net):
        self.xp = net.be.xp
        self.pending = []  # (request, flat buffer, [gradient arrays] or None)
        self.bucket, self.nbytes = [], 0
        self.t0 = time.perf_counter()

    def add(self, layer):
        """Net.backward's on_layer_grads: queue the layer's gradients, start a full bucket."""
        if not layer.trainable:
            return
        for key in sorted(layer.grads):
            g = layer.grads[key]
            if g.nbytes >= self.bucket_bytes and g.flags.c_contiguous:
                self.pending.append((self._start(g), g, None))  # in place, no copy
                continue
            self.bucket.append(g)
            self.nbytes += g.nbytes
            if self.nbytes >= self.bucket_bytes:
                self._flush()
        self._progress()

    def _flush(self):
        if self.bucket:
            buf = self.xp.concatenate([g.reshape(-1) for g in self.bucket])  # (sum of sizes,)
            self.pending.append((self._start(buf), buf, self.bucket))
        self.bucket, self.nbytes = [], 0

    def _start(self, buf):
        from mpi4py import MPI  # optional: the mpi extra
        return self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    def _progress(self):
        # MPICH advances a non-blocking collective only inside MPI calls: poke it between layers
        from mpi4py import MPI  # optional: the mpi extra
        MPI.Request.Testall([p[0] for p in self.pending])

    def _wait(self):
        from mpi4py import MPI  # optional: the mpi extra
        MPI.Request.Waitall([p[0] for p in self.pending])

    def finish(self):
        """Start the last bucket, wait for every reduction, copy bucket sums back into the grads."""
        self._flush()
        t = time.perf_counter()
        self._wait()
        self.seconds_wait += time.perf_counter() - t
        for _, buf, members in self.pending:
            o = 0
            for g in members or ():
                g[...] = buf[o:o + g.size].reshape(g.shape)
                o += g.size
        self.pending = []
        self.seconds_backward += time.perf_counter() - self.t0
        self.steps += 1


class NCCLReducer(MPIReducer):
    """The same buckets summed on the GPUs by NCCL (one rank per GPU), on a stream of their own.

    The communicator's id is made on rank 0 and broadcast over MPI as bytes (no pickle). A bucket's
    allreduce waits (on the device) for the compute stream's work so far, then runs on the NCCL
    stream while the compute stream goes on with the layers below; finish() makes the compute
    stream wait for the NCCL stream before the sums are copied back and used.
    """

    def __init__(self, dist, bucket_mb=BUCKET_MB):
        import cupy  # optional: the cuda extra
        from cupy.cuda import nccl  # optional: the cuda extra
        super().__init__(dist.comm if hasattr(dist, "comm") else dist, bucket_mb)
        self.cupy, self.nccl = cupy, nccl
        self.nccl_comm = nccl.NcclCommunicator(dist.size, _nccl_id(nccl, dist), dist.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

    def _start(self, buf):
        self.stream.wait_event(self.cupy.cuda.get_current_stream().record())
        self.nccl_comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self.types[np.dtype(buf.dtype)],
                                 self.nccl.NCCL_SUM, self.stream.ptr)  # no MPI request: the stream orders it

    def _progress(self):
        pass

    def _wait(self):
        self.cupy.cuda.get_current_stream().wait_event(self.stream.record())


def _nccl_id(nccl, dist):
    """Rank 0's ncclUniqueId on every rank, sent over MPI as 128 bytes plus its Python type.

    cupy gives the id as bytes (v13 on) or as a tuple of 128 signed chars (earlier versions).
    """
    buf = np.zeros(129, dtype=np.uint8)  # (129,) [1 if bytes else 0, the id's 128 bytes]
    if dist.rank == 0:
        uid = nccl.get_unique_id()
        raw = uid if isinstance(uid, bytes) else np.array(uid, dtype=np.int64).astype(np.int8).tobytes()
        buf[0], buf[1:] = isinstance(uid, bytes), np.frombuffer(raw, dtype=np.uint8)
    dist.Bcast(buf, root=0)
    raw = buf[1:].tobytes()
    return raw if buf[0] else tuple(int(v) for v in np.frombuffer(raw, dtype=np.int8))


# -- starting ------------------------------------------------------------------------------------
def from_environment(device="cpu", bucket_mb=BUCKET_MB):
    """Single() in a plain process; under `mpiexec -n R` (R > 1) a Distributed over MPI_COMM_WORLD.

    device: the backend name the ranks train on ('cuda': one GPU per rank, chosen by the rank's
    index on its machine, and NCCL for the gradients). Raises RuntimeError naming what is missing.
    """
    if launched_size() < 2:
        return Single()
    try:
        from mpi4py import MPI  # optional: the mpi extra
    except ImportError:
        raise RuntimeError(f"started by mpiexec with {launched_size()} ranks, but mpi4py is not installed: "
                           f"pip install -e '.[mpi]'") from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2:
        return Single()
    if device == "cuda":
        import cupy  # optional: the cuda extra
        local = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        cupy.cuda.Device(local % cupy.cuda.runtime.getDeviceCount()).use()
    dist = Distributed(comm, device, bucket_mb)
    dist.install_excepthook()
    if hasattr(sys.stdout, "reconfigure"):  # mpiexec pipes stdout: show each log line as it comes
        sys.stdout.reconfigure(line_buffering=True)
    return dist


def find_mpiexec():
    """The mpiexec beside this Python (the mpich wheel puts it there), else the one on PATH, else None."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")


def relaunch(procs, argv, cpus=None):
    """Run `mpiexec -n procs python -c 'import cli; cli.main()' *argv` and return its exit code.

    Each rank gets cpus // procs threads (NUMBA_NUM_THREADS, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS)
    unless they are set already, so R ranks do not oversubscribe the cores. MPICH's progress thread
    (MPIR_CVAR_ASYNC_PROGRESS=1) is left to the caller: it makes the reductions overlap the backward
    but needs a core of its own (bench/RESULTS.md: on a full 2-core machine it cost more than it hid).
    """
    mpiexec = find_mpiexec()
    if mpiexec is None:
        raise RuntimeError("--procs needs mpiexec: pip install -e '.[mpi]' (the mpich wheel provides it)")
    threads = str(max(1, (cpus or os.cpu_count() or 1) // procs))
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)
    cmd = [mpiexec, "-n", str(procs), sys.executable, "-c", "import cli; cli.main()", *argv]
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130


# -- sharded reading of a prepared data set --------------------------------------------------------
class ShardedImages:
    """One split's images, read from the prepared HDF5 file row by row as they are needed.

    Looks like the (M, C, S, S) uint8 array PreparedData.split(...).images would be (shape, dtype,
    len, x[positions], x[a:b]), but holds nothing: a rank reads only the rows of its share of each
    batch, so no rank loads the whole set. mean() is the per-channel mean over all ranks' shares.
    """

    lazy = True

    def __init__(self, path, index, channels, dist):

        self.path, self.index, self.dist = path, np.asarray(index, dtype=np.int64), dist  # (M,)
        self.file = h5py.File(path, "r")
        try:  # ShardedData checked the file; it is opened again here, so checked again
            check_storage(self.file, path)
            self.images = self.file["images"]  # (N, 1, S, S) uint8 in the file
            check_storage(self.images, path)
        except InputError as e:
            self.file.close()
            raise DataError(str(e)) from None
        S = self.images.shape[-1]
        self.shape, self.dtype = (len(self.index), channels, S, S), np.dtype(np.uint8)
        self.ndim, self.channels = 4, channels

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        pos = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key, dtype=np.int64)  # (k,)
        rows, back = np.unique(self.index[pos], return_inverse=True)  # h5py reads increasing rows
        x = self.images[rows] if rows.size else np.empty((0,) + self.images.shape[1:], np.uint8)  # (u, 1, S, S)
        return np.repeat(x[back.reshape(-1)], self.channels, axis=1)  # (k, C, S, S)

    def _moments(self):
        """(sum, sum of squares, count) of the grey plane over every rank's share, reduced (exact
        integer sums in float64 up to 2**53)."""
        lo, hi = share(len(self), self.dist.size, self.dist.rank)
        sums = np.zeros(2, dtype=np.float64)  # (2,) sum, sum of squares (every channel is a copy)
        for i in range(lo, hi, 256):
            g = self[i:min(i + 256, hi)][:, :1].astype(np.float64)  # (k, 1, S, S)
            sums += g.sum(), (g * g).sum()
        self.dist.allreduce(sums)
        return sums[0], sums[1], len(self) * self.shape[2] * self.shape[3]

    def mean(self, axis=None, dtype=np.float64):
        """The mean over every rank's share: per channel (C,) for axis=(0, 2, 3), else one number."""
        if axis is not None and tuple(axis) != (0, 2, 3):
            raise ValueError("ShardedImages.mean: the per-channel mean (axis=(0, 2, 3)) or the whole mean only")
        s1, _, n = self._moments()
        return np.repeat(s1 / n, self.channels).astype(dtype) if axis is not None else dtype(s1 / n)

    def std(self, dtype=np.float64):
        """The standard deviation of every pixel over every rank's share (one number)."""
        s1, s2, n = self._moments()
        return dtype(np.sqrt(max(s2 / n - (s1 / n) ** 2, 0.0)))


class ShardedSplit:
    def __init__(self, images, labels):
        self.images, self.labels = images, labels


class ShardedData:
    """A prepared data set opened for sharded reading: labels and split ids in memory, images on disk.

    Has what train() reads from load_dataset's result: split(name) (images, labels), settings,
    class_names, path.
    """

    def __init__(self, path, dist):


        self.path, self.dist, self.SPLITS = path, dist, SPLITS
        try:
            with h5py.File(path, "r") as f:
                check_storage(f, path)  # no link is followed below
                missing = [n for n in PER_IMAGE if n not in f]
                if missing:
                    raise DataError(f"{path}: missing dataset(s) {missing}")
                for name in ("labels", "split", "images"):
                    check_storage(f[name], path)
                self.labels, self.split_ids = f["labels"][...].astype(np.int64), f["split"][...]  # (N,), (N,)
                shape = f["images"].shape
                self.settings = json.loads(f.attrs["settings"])
                self.class_names = json.loads(f.attrs["class_names"])
        except InputError as e:
            raise DataError(str(e)) from None
        except (OSError, KeyError) as e:
            raise DataError(f"{path}: not a readable prepared data set ({e})") from None
        if len(shape) != 4 or shape[0] != self.labels.size or shape[1] != 1:
            raise DataError(f"{path}: images must be (N, 1, S, S) with N = {self.labels.size}, got {shape}")
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataError(f"{path}: labels outside 0..{len(self.class_names) - 1}")
        if self.split_ids.shape != self.labels.shape or not np.isin(self.split_ids, (0, 1, 2)).all():
            raise DataError(f"{path}: 'split' must hold one 0, 1 or 2 per image")

    def split(self, name):
        index = np.flatnonzero(self.split_ids == self.SPLITS.index(name))  # (M,)
        images = ShardedImages(self.path, index, int(self.settings.get("channels", 3)), self.dist)
        return ShardedSplit(images, self.labels[index])


def open_sharded(path, dist):
    """The prepared set at `path` for a rank of `dist`: load_dataset(path) when dist is Single."""
    if dist.size == 1:
        return load_dataset(path)
    return ShardedData(path, dist)
