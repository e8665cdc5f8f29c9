"""The CPU kernels' Numba on-disk cache: a cached kernel compiled in one process is loaded, not compiled
again, in the next.

Why (kernels/cpu/winograd.py, _dy_rows): a cached function that takes a Numba function as an argument
has a dispatcher object in its signature. Every new process then misses the cache, compiles again and
appends one more entry to the cache index; once an old entry's dispatcher has been collected the index
can no longer be written, and the first Winograd weight gradient of every process raised
"ReferenceError: underlying object has vanished" (seen on 2026-12-07 after 266 entries).
"""
import json
import os
import subprocess
import sys

import numpy as np
from numba import types
from numba.core.registry import CPUDispatcher

import kernels.cpu as cpu_tier
from kernels.cpu import winograd
from kernels.shapes import ConvGeometry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import json
import numpy as np
from kernels.cpu import winograd as wg
dy = np.zeros((1, 2, 4, 4), np.float32)
for name, fn, t, n in (("F43", wg._dy_rows43, wg.F43, 36), ("F45", wg._dy_rows45, wg.F45, 64)):
    fn(dy, 0, (1, 1, 0), np.array(t.k, np.float32), np.empty((n, 2, 1), np.float32))
print(json.dumps({name: [sum(fn.stats.cache_hits.values()), sum(fn.stats.cache_misses.values())]
                  for name, fn in (("F43", wg._dy_rows43), ("F45", wg._dy_rows45))}))
"""


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONPATH=ROOT)
    env.pop("NUMBA_DISABLE_JIT", None)
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, check=False, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_winograd_dy_transform_is_loaded_from_the_cache_in_a_second_process(tmp_path):
    first = _run(tmp_path)
    assert first == {"F43": [0, 1], "F45": [0, 1]}  # compiled once each, in a fresh cache
    second = _run(tmp_path)
    assert second == {"F43": [1, 0], "F45": [1, 0]}  # loaded, nothing compiled
    files = [f for _, _, names in os.walk(tmp_path) for f in names]
    for fn in ("_dy_rows43", "_dy_rows45"):  # one compiled entry each: the index did not grow
        assert len([f for f in files if fn in f and f.endswith(".nbc")]) == 1, sorted(files)


def _function_typed(t):
    return isinstance(t, (types.Dispatcher, types.Function, types.FunctionType))


def test_no_cached_cpu_kernel_takes_a_numba_function_as_an_argument():
    # compile the Winograd weight gradient of both tilings (the kernels that once did), then look at
    # every compiled signature of every cached Numba function of the CPU tier's modules
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    for K, p in ((3, 1), (5, 2)):
        dy = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
        winograd.winograd_weight_grad(dy, x, ConvGeometry((1, 1), (p, p), 1), np.empty((3, 4, K, K), np.float32))
    seen = 0
    for mod_name in sorted(m for m in sys.modules if m.startswith(cpu_tier.__name__ + ".")):
        for name, obj in vars(sys.modules[mod_name]).items():
            if isinstance(obj, CPUDispatcher) and obj._cache.__class__.__name__ != "NullCache":
                for sig in obj.signatures:
                    seen += 1
                    assert not any(_function_typed(t) for t in sig), f"{mod_name}.{name} is cached and takes {sig}"
    assert seen > 0
