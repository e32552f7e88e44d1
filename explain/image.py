"""Image saliency for one case (Captum): Integrated Gradients, Grad-CAM on the last ResNet stage,
occlusion, and the encoder's own spatial attention; maps returned at the original image resolution.

Any declared image modality can be explained (``modality=``, default the first). A colour (3, H, W) image
gets one map: Integrated Gradients attributions summed over the three channels (so the map still adds up
to the change in the explained score), occlusion hides all channels of a window at once (one value per
window), Grad-CAM and attention are spatial already.

Integrated Gradients runs on the shared engine (:mod:`explain.integrated`; :func:`image_path` is the path
it integrates: for a ResNet in eval mode, its first convolution and batch norm are affine in the pixels, so
they run at the path's two ends only and the steps start after them, the same map up to float rounding);
:func:`grad_cam_from_features` is Grad-CAM from the last stage's activations a caller kept from its
encoding pass, which needs no second pass through the backbone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam, Occlusion
from torch import nn

from explain._forward import ModalityForward, attribution_mode
from explain.integrated import Cancel, Completeness, Integration, IntegrationPath, Prepared, integrate

IMAGE_METHODS = ("integrated_gradients", "grad_cam", "occlusion", "attention")


@dataclass
class ImageSaliency:
    method: str
    target: int
    map: np.ndarray  # (H, W) at the original image's resolution (the middle slice of a volume)
    model_map: np.ndarray  # (S, S) in the model's input frame
    convergence_delta: float | None = None  # Integrated Gradients: sum(attr) - (logit(x) - logit(black image))
    completeness: Completeness | None = None  # Integrated Gradients: steps, relative error, converged


def image_saliency(forward: ModalityForward, original_shape: tuple[int, ...], target: int, method: str, *,
                   n_steps: int = 50, internal_batch_size: int | None = None, window: int = 16,
                   stride: int = 8, modality: str | None = None, integration: Integration | None = None,
                   cancel: Cancel = None) -> ImageSaliency:
    """Saliency of image modality ``modality`` (default the first declared) for class ``target``, in logit
    units (a survival model: its explained quantity). Positive = evidence for the class (IG, occlusion);
    Grad-CAM and attention are non-negative. ``integration`` (Integrated Gradients): how the path is
    integrated; default exactly ``n_steps`` Gauss-Legendre steps."""
    if method not in IMAGE_METHODS:
        raise ValueError(f"image method must be one of {IMAGE_METHODS}, got {method!r}")
    if method == "integrated_gradients":
        prepared = image_path(forward, original_shape, target, modality)
        integration = integration or Integration(n_steps=n_steps, internal_batch_size=internal_batch_size)
        ((_, attributions, completeness),) = integrate(forward, [prepared.path], target, integration, cancel)
        return prepared.finish(attributions, completeness)
    name = _image_name(forward, modality)
    image = forward.inputs(name)["image"]  # (1, C, S, S)
    channels = image.shape[1]
    encoder = forward.model.encoders[name]
    function = forward.function(name)
    with attribution_mode(forward.model):
        if method == "grad_cam":
            cam = LayerGradCam(function, encoder.backbone.encoder.stages[-1]).attribute(
                image, target=target, relu_attributions=True)  # (1, 1, h, w)
            model_map = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        elif method == "occlusion":
            model_map = Occlusion(function).attribute(
                image, sliding_window_shapes=(channels, window, window), strides=(1, stride, stride), baselines=0.0,
                target=target, perturbations_per_eval=64)[0, 0]
        else:
            with torch.no_grad():
                attention = encoder(image).attention  # (1, h, w)
            model_map = F.interpolate(attention[:, None], size=image.shape[-2:], mode="bilinear",
                                      align_corners=False)[0, 0]
    model_map = model_map.detach().float().cpu().numpy()
    return ImageSaliency(method, target, to_original(model_map, original_shape), model_map)


def _image_name(forward: ModalityForward, modality: str | None) -> str:
    name = forward.first("image") if modality is None else modality
    if name is None or not forward.has(name):
        raise ValueError("this case has no image to explain" if name is None or name == "image"
                         else f"this case has no {name} image to explain")
    return name


def image_path(forward: ModalityForward, original_shape: tuple[int, ...], target: int,
               modality: str | None = None) -> Prepared:
    """The Integrated Gradients path of an image modality (black image to the case's, through its encoder)
    and how its attributions become the panel: summed over channels, back at the original resolution."""
    name = _image_name(forward, modality)
    image = forward.inputs(name)["image"]  # (1, C, S, S)
    encoder = forward.model.encoders[name]
    stem = _resnet_stem(encoder)
    if stem is None:  # another architecture, or a model in training mode: the whole encoder on every step
        path = IntegrationPath(name, "image", image, torch.zeros_like(image), lambda x: encoder(x).embedding)
    else:
        path = IntegrationPath(name, "image", image, torch.zeros_like(image), stem[1], lift=stem[0])

    def finish(attributions: torch.Tensor, completeness: Completeness) -> ImageSaliency:
        model_map = attributions[0].sum(0).float().cpu().numpy()  # (C, S, S) -> (S, S)
        return ImageSaliency("integrated_gradients", target, to_original(model_map, original_shape), model_map,
                             completeness.delta, completeness)

    return Prepared(path, finish)


Map = Callable[[torch.Tensor], torch.Tensor]


def _resnet_stem(encoder) -> tuple[Map, Map] | None:
    """An eval-mode ResNet image encoder split for its path (explain.integrated.IntegrationPath.lift): the
    first convolution and its batch norm, affine in the pixels (B, C, S, S) -> (B, E, S/2, S/2), and the
    rest of the encoder (ReLU, max pool, stages, attention pooling) on their output -> (B, d). None for
    another architecture or a model in training mode (batch statistics are not affine)."""
    backbone = getattr(encoder, "backbone", None)
    embedder = getattr(backbone, "embedder", None)
    stem = getattr(embedder, "embedder", None)
    conv, norm = getattr(stem, "convolution", None), getattr(stem, "normalization", None)
    stages = getattr(backbone, "encoder", None)
    if (encoder.training or not isinstance(conv, nn.Conv2d) or not isinstance(norm, nn.BatchNorm2d)
            or norm.training or stages is None or not isinstance(getattr(encoder, "pool", None), nn.Module)):
        return None
    channels = encoder.in_channels

    def lift(image: torch.Tensor) -> torch.Tensor:
        x = image.expand(-1, channels, -1, -1) if channels != image.shape[1] else image  # grey -> the stem's channels
        return norm(conv(x))

    def embed(lifted: torch.Tensor) -> torch.Tensor:
        feature_map = stages(embedder.pooler(stem.activation(lifted))).last_hidden_state  # (B, C, h, w)
        pooled, _ = encoder.pool(feature_map.flatten(2).transpose(1, 2))  # (B, h*w, C) -> (B, C)
        return pooled

    return lift, embed


def grad_cam_from_features(forward: ModalityForward, features: torch.Tensor, original_shape: tuple[int, ...],
                           target: int, modality: str) -> ImageSaliency:
    """Grad-CAM on the last ResNet stage from its activations ``features`` (1, C, h, w), kept from the pass
    that encoded the case: only the attention pooling and the fusion are differentiated. The same map as
    Captum's LayerGradCam on ``backbone.encoder.stages[-1]`` (tested), without a second backbone pass."""
    encoder = forward.model.encoders[modality]
    size = forward.inputs(modality)["image"].shape[-2:]
    with attribution_mode(forward.model):
        activations = features.detach().requires_grad_(True)
        pooled, _ = encoder.pool(activations.flatten(2).transpose(1, 2))  # (1, h*w, C) -> (1, C)
        score = forward.with_embedding(modality, pooled)[0, target]
        (grad,) = torch.autograd.grad(score, activations)
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * activations.detach()).sum(1, keepdim=True))  # (1, 1, h, w)
    model_map = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[0, 0].float().cpu().numpy()
    return ImageSaliency("grad_cam", target, to_original(model_map, original_shape), model_map)


def to_original(model_map: np.ndarray, original_shape: tuple[int, ...]) -> np.ndarray:
    """Undo the input preparation (pad to a square, resize to S): (S, S) -> (H, W) of the image or of
    the middle slice of a (D, H, W) volume."""
    h, w = original_shape[-2:]
    side = max(h, w)
    tensor = torch.from_numpy(np.ascontiguousarray(model_map, dtype=np.float32))[None, None]
    square = F.interpolate(tensor, size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    top, left = (side - h) // 2, (side - w) // 2
    return square[top:top + h, left:left + w].numpy()
