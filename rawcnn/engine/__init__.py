"""The engine: layers with hand-written forward and backward passes, the Net that runs them, the
models, the optimizer, initialisation, checkpoints and gradient checks.

    layers       one file per layer; the contract is layers/base.py
    net          Net: the one forward/backward path through an ordered list of layers
    models       the model specs (custom, custom-gap, AlexNet, VGG16, VGG19) and build()
    init         weight initialisation (seeded)
    optim        SGD with momentum and L2, the plateau learning-rate schedule
    checkpoint   save / load a net, its optimizer state and its records (HDF5, no pickle)
    gradcheck    finite-difference checks of every layer's backward
    conv_algo    which convolution algorithm each Conv2d runs (im2col, Winograd, direct)
    summary      each layer's output shape, parameters and FLOPs
    determinism  pinning BLAS threads so the same seed gives the same bits

It imports rawcnn.data (a checkpoint checks the data settings it carries), rawcnn.files and
kernels; nothing above it.
"""
