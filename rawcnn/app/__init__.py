"""The application layer: the back end of every `rawcnn` command, one module per family.

cli.py parses the options, makes one call into this package and prints what it returns; the
modules here hold the glue between the library's parts that a command needs (building data sets
and augmenters, resolving recipes, finding layers, starting processes). The library below does
not import this package (rawcnn/app/demo.py, a whole task itself, runs the viz tasks from here), and
it does not import weights_import (`rawcnn import-weights` calls that package from cli.py).

    common    what every command shares: --overwrite's bookkeeping, output checks, recipes,
              errors under mpiexec
    options   what cli.py builds options from at import time (the Recipe's fields; nothing heavy)
    tools     summary, gradcheck, trace, the demo
    data      data synth, data prepare
    train     train (and --procs), build_training_net, run_training
    cv        cv
    evaluate  evaluate, format_metrics
    predict   predict
    search    search
    viz       viz filters / activations / heatmap / dream / score, report

The submodules are imported on use (`from rawcnn.app import train`), so `rawcnn --help` stays quick;
options alone is imported with cli.py.
"""
