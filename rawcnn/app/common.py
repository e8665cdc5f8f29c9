"""What every command shares: --overwrite's bookkeeping, the early output check, --conv-algo, the
recipe behind --recipe and its flags, and failing under mpiexec."""


def begin_command(overwrite):
    """Start a command: without `overwrite` it replaces no file it did not create in this run."""
    from rawcnn.files.fileio import begin_command as begin
    begin(overwrite)


def end_command():
    """End the command begun by begin_command."""
    from rawcnn.files.fileio import end_command as end
    end()


def check_out(*paths):
    """Raise OverwriteError (a ValueError) when an output file exists and --overwrite was not given."""
    from rawcnn.files.fileio import check_targets
    check_targets([p for p in paths if p])


def check_out_folder(path, folder=True):
    """Raise SystemFolderError (a ValueError) when output `path` (a folder, or with folder=False a file whose
    folder counts) is the filesystem root, a system folder or the home folder itself (rawcnn.files.fileio)."""
    from rawcnn.files.fileio import check_out_folder as check
    check(path, folder=folder)


def resolve_recipe(opts):
    """The settings of opts["recipe"] with every other flag the user gave applied (rawcnn.training.recipes.resolve)."""
    from rawcnn.training.recipes import resolve
    opts = dict(opts)
    return resolve(opts.pop("recipe"), **opts)


def fail_if_distributed(exc):
    """Under mpiexec: print exc naming this rank and stop every rank (rawcnn.training.distributed); else nothing."""
    from rawcnn.training.distributed import fail_if_distributed as fail
    fail(exc)
