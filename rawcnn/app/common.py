"""What every command shares: --overwrite's bookkeeping, the early output check, the recipe behind
--recipe and its flags, and failing under mpiexec."""
from rawcnn.files import fileio
from rawcnn.training.recipes import FIELDS, resolve


def command_outputs(overwrite):
    """The context a command runs in (`with command_outputs(overwrite):`): without `overwrite` it replaces
    no file it did not write itself (rawcnn.files.fileio.command_outputs)."""
    return fileio.command_outputs(overwrite)


def check_out(*paths):
    """Raise OverwriteError (a ValueError) when an output file exists and --overwrite was not given."""
    fileio.check_targets([p for p in paths if p])


def check_out_folder(path, folder=True):
    """Raise SystemFolderError (a ValueError) when output `path` (a folder, or with folder=False a file whose
    folder counts) is the filesystem root, a system folder or the home folder itself (rawcnn.files.fileio)."""
    fileio.check_out_folder(path, folder=folder)


def resolve_recipe(options):
    """The Recipe of options["recipe"] with every recipe flag the user gave applied (rawcnn.training.recipes.resolve).

    options: a command's options by name; the recipe's are those named like a Recipe field (None: not given).
    """
    return resolve(options["recipe"], **{k: options[k] for k in FIELDS if k in options})

