"""Transfer learning: a fresh classification head on pretrained features.

The paper this project follows fine-tunes AlexNet, VGG16 and VGG19 by replacing the 1000-way ImageNet
layer with a new 2-way one (normal / abnormal) that learns faster than the pretrained layers. That is
the net's own business: `Net.replace_head(num_classes, seed, lr_mult)` and `Net.freeze_through(name)`.
`new_head` is kept here for callers of the old name.
"""


def new_head(net, num_classes, seed, lr_mult=10.0, weight_std=0.01):
    """= net.replace_head(num_classes, seed, lr_mult, weight_std); returns the new layer."""
    return net.replace_head(num_classes, seed=seed, lr_mult=lr_mult, weight_std=weight_std)
