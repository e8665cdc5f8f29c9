"""Model specs several test files and helper scripts share (tests/conftest.py hands them to tests;
fuzz_inputs.py and other scripts run outside pytest import them from here)."""

# 3 x 32 x 32 -> conv 3x3 stride 2 (4 x 16 x 16) -> ReLU -> 2 classes: the smallest net with a
# conv layer that the commands (train, predict, cv, evaluate) take on 32-pixel prepared sets
TINY_CONV_SPEC = {"name": "tiny", "input": [3, 32, 32], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc8", "out_features": 2}]}
# the same with a 2x2 max-pool after the ReLU (4 x 8 x 8 into fc8)
TINY_CONV_POOL_SPEC = {"name": "tiny", "input": [3, 32, 32], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc8", "out_features": 2}]}
# 1 x 16 x 16 -> 2 conv channels -> pool -> 2 classes; square_net sets its weights by hand
SQUARE_SPEC = {"name": "square", "input": [1, 16, 16], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 2, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc8", "out_features": 2}]}
