"""Training and measuring: the loops and workflows built on the engine and the data.

    train         the SGD loop: batches, augmentation, validation, best.h5 / last.h5, resume
    recipe_hooks  what a recipe adds to the loop: warm-up, clipping, class weights, selection
    recipes       Recipe: every training setting with its help, range and default; the named
                  recipes (paper, default)
    from_recipe   what turns a Recipe into a trained net: input contract, augmenter, LSUV, train()
    cv            k-fold cross-validation, pooled out-of-fold AUC with a bootstrap interval
    search        seeded random search over a recipe's settings
    evaluate      metrics of a checkpoint on a set; class probabilities for image files
    metrics       confusion matrix, sensitivity, specificity, ROC, AUC (written out)
    plots         training curves and ROC curves as PNG
    distributed   data-parallel training over MPI ranks
    input_buffer  the trainer's input conversion into one kept buffer

It imports rawcnn.engine, rawcnn.data, rawcnn.files and kernels; not rawcnn.viz or rawcnn.app.
"""
