"""Encoders, cross-modal fusion, heads, the NeuroFusion model and its baselines."""

from neurofusion.models.encoders import (
    EncoderOutput,
    FeatureNormaliser,
    ImageEncoder,
    SignalEncoder,
    TabularEncoder,
    TextEncoder,
)
from neurofusion.models.fusion import CrossModalFusion, FusionOutput, GatedCrossModalFusion, MissingEmbeddings
from neurofusion.models.heads import (
    ClassificationHead,
    RegressionHead,
    SurvivalHead,
    build_heads,
    multitask_loss,
)
from neurofusion.models.model import (
    ARCHITECTURE_CLASSES,
    ENCODERS,
    EarlyFusion,
    Encoded,
    GatedNeuroFusion,
    LateFusion,
    MLPFusion,
    ModelOutput,
    MultiModalModel,
    NotAClassifierError,
    NeuroFusion,
    SingleModality,
    build_model,
    encoder_inputs,
    tabular_normaliser,
    tabular_normalisers,
)

__all__ = [
    "ARCHITECTURE_CLASSES", "ClassificationHead", "CrossModalFusion", "EarlyFusion", "Encoded", "EncoderOutput",
    "FeatureNormaliser", "FusionOutput", "GatedCrossModalFusion", "GatedNeuroFusion", "ImageEncoder", "LateFusion",
    "MLPFusion", "MissingEmbeddings",
    "ModelOutput", "MultiModalModel", "NeuroFusion", "NotAClassifierError", "RegressionHead", "SignalEncoder",
    "SingleModality", "SurvivalHead", "TabularEncoder", "TextEncoder", "build_heads", "build_model", "multitask_loss",
    "tabular_normaliser", "tabular_normalisers", "encoder_inputs", "ENCODERS",
]
