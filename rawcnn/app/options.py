"""What cli.py builds options from when it is imported: the training recipe's fields and names.

It imports only rawcnn.training.recipes, which loads nothing heavy, so that `rawcnn --help` stays quick.
"""
import dataclasses
import os
import sys

from rawcnn.training.recipes import RECIPES, Recipe, flag

RECIPE_FIELDS = dataclasses.fields(Recipe)  # each with metadata help, range (a recipes.Range) or choices
RECIPE_NAMES = tuple(RECIPES)

__all__ = ["RECIPE_FIELDS", "RECIPE_NAMES", "flag"]


DENORMALS_ENV = "RAWCNN_FLUSH_DENORMALS"  # kernels/cpu/denormals.py reads it when the CPU tier is imported


def choose_denormals(flush):
    """rawcnn --flush-denormals/--keep-denormals: flush (True), keep (False) or, None, the environment's
    RAWCNN_FLUSH_DENORMALS when set and else flush. Put into that variable, which the CPU tier applies when it
    is imported (commands import it after this runs: `rawcnn --help` stays quick); in a process that loaded
    the tier already (a test, a notebook calling main) applied at once. The variable's name and its check
    repeat kernels/cpu/denormals.py's (ENV, apply_environment) on purpose: importing that module here would
    load NumPy and Numba before every command, `--help` included."""
    if flush is not None or DENORMALS_ENV not in os.environ:
        os.environ[DENORMALS_ENV] = "0" if flush is False else "1"
    if os.environ[DENORMALS_ENV] not in ("0", "1"):
        raise ValueError(f"{DENORMALS_ENV} must be 0 (keep subnormal floats) or 1 (flush them to zero), "
                         f"got {os.environ[DENORMALS_ENV]!r}")
    loaded = sys.modules.get("kernels.cpu.denormals")
    if loaded is not None:
        loaded.apply_environment()
