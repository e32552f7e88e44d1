"""NeuroFusion: a multi-modal clinical model (image, text, signal, tabular) and everything to train and load it."""
