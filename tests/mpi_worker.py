"""Run by tests/test_distributed.py under `mpiexec -n R`: one data-parallel training run per call.

    python tests/mpi_worker.py MODE DATA OUT [EPOCHS] [DTYPE] [BUCKET_MB] [MICRO_BATCHES]

MODE: train (train, or resume when OUT holds last.h5), raise (rank 1 raises in epoch 1, batch 2),
nan (rank 1's loss becomes NaN in epoch 2, batch 1: after the warm-up step, 6 steps and 1 validation
batch), sigint (rank 1 alone gets SIGINT after epoch 2, batch 2: the other rank must stop with it).
MICRO_BATCHES: Run(..., micro_batches=M) (0 or absent: None). The net, data and settings are the test's.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rawcnn.training.distributed import from_environment, open_sharded  # noqa: E402
from rawcnn.training.train import Run, train  # noqa: E402
from test_distributed import RECIPE, RUN, new_net, shift  # noqa: E402


def main(mode, data, out, epochs=3, dtype="float32", bucket_mb=25.0, micro_batches=0):
    dist = from_environment("cpu", bucket_mb=float(bucket_mb))
    net = new_net().astype(np.dtype(dtype))
    on_batch = None
    if mode == "raise":
        def on_batch(epoch, batch, loss):
            if dist.rank == 1 and (epoch, batch) == (1, 2):
                raise RuntimeError("injected failure")
    if mode == "sigint":
        def on_batch(epoch, batch, loss):
            if dist.rank == 1 and (epoch, batch) == (2, 2):
                import signal
                os.kill(os.getpid(), signal.SIGINT)
    if mode == "nan" and dist.rank == 1:  # rank 1's 9th loss (epoch 2, batch 1; call 1 is train's warm-up) is NaN
        from rawcnn.engine.layers import SoftmaxCrossEntropy
        real, calls = SoftmaxCrossEntropy.forward, [0]

        def forward(self, logits, labels, train=True):
            loss = real(self, logits, labels, train)
            calls[0] += 1
            return float("nan") if calls[0] == 9 else loss
        SoftmaxCrossEntropy.forward = forward
    run = Run(out_dir=out, resume=os.path.exists(os.path.join(out, "last.h5")), dist=dist,
              micro_batches=int(micro_batches) or None, **RUN)
    r = train(net, open_sharded(data, dist), RECIPE.replace(epochs=int(epochs)), run, augment=shift(),
              on_batch=on_batch)
    if dist.is_root:
        print(f"RESULT {r['status']}: {r['reason']}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
