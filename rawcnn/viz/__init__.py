"""What the network learned and where it looks (Sivaramakrishnan et al., NLM/NIH, "Visualizing
abnormalities in chest radiographs through salient network activations in Deep Learning").

    images       scaling to [0, 1], the 'jet' map, overlays with a threshold, montages, PNG files
    filters      convolution filters as pictures
    activations  raw per-channel activations of any layer, grids, the channels that fire most
    heatmap      'channel', 'gradcam' and 'saliency' maps through the engine's own backward
    dream        activation maximisation (deep-dream images) of class neurons and channels
    score        localisation scores against lesion and lung masks; a table over a data set

The `rawcnn viz ...` tasks, one function each, are in rawcnn/app/viz.py; the HTML report of a
training run (`rawcnn report`) is rawcnn/app/report.py, since it runs evaluation and training's plots.
"""
from rawcnn.viz.activations import layer_activations, rank_channels, save_activations, top_channels
from rawcnn.viz.dream import dream
from rawcnn.viz.filters import filters_image, save_filters
from rawcnn.viz.heatmap import METHODS, default_layer, heatmaps, logit_layer
from rawcnn.viz.images import jet, overlay, scale01, scale_channels, write_png
from rawcnn.viz.score import energy_share, iou, localisation_table, pointing_game, score_map

__all__ = ["layer_activations", "rank_channels", "save_activations", "top_channels", "dream", "filters_image",
           "save_filters", "METHODS", "default_layer", "heatmaps", "logit_layer", "jet", "overlay", "scale01",
           "scale_channels", "write_png", "energy_share", "iou", "localisation_table",
           "pointing_game", "score_map"]
