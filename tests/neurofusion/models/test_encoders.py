"""Encoders: output shapes, attention maps that are distributions, tabular normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofusion.config import ImageEncoderConfig, SignalEncoderConfig, TabularEncoderConfig, TextEncoderConfig
from neurofusion.data import FeatureSpec
from neurofusion.models import FeatureNormaliser, ImageEncoder, SignalEncoder, TabularEncoder, TextEncoder


def test_image_encoder_spatial_attention_is_a_distribution_over_the_map():
    config = ImageEncoderConfig(image_size=64, embedding_size=8, hidden_sizes=[8, 16, 24], depths=[1, 1, 1],
                                layer_type="basic")
    out = ImageEncoder(config).eval()(torch.rand(3, 1, 64, 64))
    assert out.embedding.shape == (3, 24)
    assert out.attention.shape == (3, 4, 4)  # 64 px / 16
    assert torch.allclose(out.attention.sum((1, 2)), torch.ones(3), atol=1e-6)


def test_signal_encoder_temporal_attention_covers_the_recording():
    config = SignalEncoderConfig(fs=100.0, seconds=8.0, conv_channels=[8, 8, 8], lstm_hidden=6, out_dim=10)
    encoder = SignalEncoder(config).eval()
    out = encoder(torch.randn(2, 12, 800))
    assert out.embedding.shape == (2, 10)
    assert out.attention.shape == (2, 800 // encoder.downsample) and encoder.downsample == 8
    assert torch.allclose(out.attention.sum(1), torch.ones(2), atol=1e-6)


def test_text_encoder_accepts_embeddings_in_place_of_ids():
    encoder = TextEncoder(TextEncoderConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2,
                                            intermediate_size=32, max_length=32)).eval()
    ids = torch.randint(5, 50, (2, 9))
    mask = torch.ones_like(ids)
    embeds = encoder.bert.embeddings.word_embeddings(ids)
    by_ids = encoder(ids, mask).embedding
    by_embeds = encoder(None, mask, inputs_embeds=embeds).embedding
    assert by_ids.shape == (2, 16)
    assert torch.allclose(by_ids, by_embeds, atol=1e-5)


def test_text_encoder_cls_shortcut_equals_the_full_bert_forward_and_its_gradients():
    """The last layer attends from [CLS] only; values and input gradients must equal BertModel's own
    forward on padded batches."""
    from transformers import BertModel

    encoder = TextEncoder(TextEncoderConfig(vocab_size=80, hidden_size=32, num_layers=3, num_heads=4,
                                            intermediate_size=48, max_length=64)).eval()
    reference = BertModel(encoder.bert.config, add_pooling_layer=False).eval()
    reference.load_state_dict(encoder.bert.state_dict())
    ids = torch.randint(5, 80, (4, 40))
    mask = torch.ones_like(ids)
    mask[1, 25:] = 0
    mask[3, 6:] = 0
    embeds = encoder.bert.embeddings.word_embeddings(ids).detach().requires_grad_(True)
    ours = encoder(None, mask, inputs_embeds=embeds).embedding
    (grad_ours,) = torch.autograd.grad(ours.square().sum(), embeds)
    embeds_ref = embeds.detach().clone().requires_grad_(True)
    theirs = reference(inputs_embeds=embeds_ref, attention_mask=mask).last_hidden_state[:, 0]
    (grad_theirs,) = torch.autograd.grad(theirs.square().sum(), embeds_ref)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad_ours, grad_theirs, atol=1e-5, rtol=1e-4)
    assert grad_ours[3, 6:].abs().max() == 0  # padding gets no gradient


def test_normaliser_uses_training_statistics_and_log_scale_for_skewed_labs():
    rng = np.random.default_rng(0)
    troponin = rng.lognormal(np.log(6), 1.2, 500)  # strongly right-skewed
    sodium = rng.normal(140, 3, 500)
    values = torch.tensor(np.stack([troponin, sodium], 1), dtype=torch.float32)
    mask = torch.ones_like(values, dtype=torch.bool)
    mask[:50, 1] = False
    normaliser = FeatureNormaliser(2)
    normaliser.fit(values, mask)
    assert normaliser.log_scale.tolist() == [True, False]
    assert normaliser.mean[0] == torch.log1p(values[:, 0]).mean()
    assert torch.isclose(normaliser.mean[1], values[50:, 1].mean())
    z = normaliser(values, mask)
    assert abs(float(z[50:, 1].mean())) < 1e-4 and abs(float(z[50:, 1].std()) - 1) < 1e-3
    assert (z[:50, 1] == 0).all()  # unmeasured -> 0 (and the mask tells the MLP it was unmeasured)


def test_tabular_encoder_missing_category_has_a_zero_embedding():
    features = (FeatureSpec("age"), FeatureSpec("sex", kind="categorical", categories=("F", "M")))
    encoder = TabularEncoder(TabularEncoderConfig(hidden_sizes=[8], category_dim=3, out_dim=5), features)
    assert torch.equal(encoder.embeddings[0].weight[0], torch.zeros(3))
    out = encoder(torch.tensor([[60.0], [0.0]]), torch.tensor([[True], [False]]), torch.tensor([[2], [0]]))
    assert out.embedding.shape == (2, 5)


def test_local_pretrained_bert_and_resnet_directories_are_loaded_not_downloaded(tmp_path, monkeypatch):
    from transformers import BertConfig, BertModel, ResNetConfig, ResNetModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bert = BertModel(BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32), add_pooling_layer=False)
    bert.save_pretrained(tmp_path / "bert")
    resnet = ResNetModel(ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 12], depths=[1, 1],
                                      layer_type="basic"))
    resnet.save_pretrained(tmp_path / "resnet")

    text = TextEncoder(TextEncoderConfig(hidden_size=16, pretrained=str(tmp_path / "bert"))).eval()
    assert torch.equal(text.bert.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight)
    ids, mask = torch.randint(5, 60, (2, 12)), torch.tensor([[1] * 12, [1] * 7 + [0] * 5])
    torch.testing.assert_close(text(ids, mask).embedding, bert.eval()(ids, attention_mask=mask).last_hidden_state[:, 0],
                               atol=1e-5, rtol=1e-5)
    image = ImageEncoder(ImageEncoderConfig(hidden_sizes=[8, 12], pretrained=str(tmp_path / "resnet"))).eval()
    assert image(torch.rand(2, 1, 32, 32)).embedding.shape == (2, 12)  # grey image repeated to 3 channels
    with pytest.raises(ValueError, match="pretrained BERT has hidden size 16, config says 768"):
        TextEncoder(TextEncoderConfig(pretrained=str(tmp_path / "bert")))
    with pytest.raises(ValueError, match="pretrained directory .*no_such_dir not found"):
        TextEncoder(TextEncoderConfig(hidden_size=16, pretrained=str(tmp_path / "no_such_dir")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty has no model.safetensors \\(it has no weights file\\)"):
        TextEncoder(TextEncoderConfig(hidden_size=16, pretrained=str(tmp_path / "empty")))
    (tmp_path / "bert" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot load BertModel from"):
        TextEncoder(TextEncoderConfig(hidden_size=16, pretrained=str(tmp_path / "bert")))


class _Payload:
    """Unpickling this creates a file: the proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("modality", ["text", "image"])
def test_a_pretrained_folder_with_pickled_weights_is_refused_without_unpickling(tmp_path, modality):
    import pickle

    from transformers import BertConfig, ResNetConfig

    folder = tmp_path / "pretrained"
    folder.mkdir()
    marker = tmp_path / "unpickled"
    if modality == "text":
        BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=32).save_pretrained(folder)
    else:
        ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 12], depths=[1, 1]).save_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": _Payload(str(marker))}))
    with pytest.raises(ValueError) as err:
        if modality == "text":
            TextEncoder(TextEncoderConfig(hidden_size=16, pretrained=str(folder)))
        else:
            ImageEncoder(ImageEncoderConfig(hidden_sizes=[8, 12], pretrained=str(folder)))
    message = str(err.value)
    assert message.startswith(f"{modality} encoder: pretrained directory {folder} has no model.safetensors")
    assert "pytorch_model.bin" in message and "never loaded" in message
    assert not marker.exists()  # nothing was unpickled


def test_signal_encoder_differentiates_in_eval_mode_without_cudnn_and_restores_it(monkeypatch):
    """cuDNN cannot differentiate an RNN in eval mode (attribution does exactly that on a GPU): the LSTM
    then runs with cuDNN off, and only then; the switch is restored afterwards."""
    torch.manual_seed(0)  # a 5-unit ReLU output is all dead for about 4 % of random initialisations
    config = SignalEncoderConfig(fs=50.0, seconds=2.0, conv_channels=[4], lstm_hidden=3, out_dim=5)
    encoder = SignalEncoder(config)
    seen = []
    encoder.lstm.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cudnn.enabled))
    assert torch.backends.cudnn.enabled
    x = torch.randn(2, 12, 100, requires_grad=True)
    encoder.eval()
    eval_grad = encoder(x).embedding
    eval_grad.sum().backward()
    with torch.no_grad():
        eval_no_grad = encoder(x).embedding
    encoder.train()
    encoder(x)
    assert seen == [False, True, True]
    assert torch.backends.cudnn.enabled
    torch.testing.assert_close(eval_grad.detach(), eval_no_grad)  # same numbers either way on this device
    assert x.grad is not None and x.grad.abs().sum() > 0
