"""rawcnn: a from-scratch CNN engine with hand-written forward and backward passes."""
__version__ = "0.1.0"
