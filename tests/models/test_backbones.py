"""MAD backbones: shapes, MAD's init (and its AutoEncoder pitfall), positions, and one training step per arch."""
import math

import pytest
import torch
from torch import nn

from statemix.models import AutoEncoder, build_model, registry
from statemix.models.backbones import SwiGLU, sincos_positions


def test_swiglu_inner_width():
    """MAD: int(2·128·4/3) = 341, rounded up to a multiple of 16 = 352."""
    assert SwiGLU(128).w1.out_features == 352


def test_sincos_hand_worked():
    table = sincos_positions(3, 4)  # half = 2, frequencies 1 and 10000^-1
    expected = torch.tensor([[0.0, 0.0, 1.0, 1.0],
                             [math.sin(1), math.sin(1e-4), math.cos(1), math.cos(1e-4)],
                             [math.sin(2), math.sin(2e-4), math.cos(2), math.cos(2e-4)]])
    torch.testing.assert_close(table, expected)


def test_language_model_layout_and_init():
    torch.manual_seed(0)
    model = build_model("hlru-m2", 64, vocab_size=16, seq_len=32, d_model=32, n_layers=2)
    assert len(model.layers) == 4 and isinstance(model.layers[1].layer, SwiGLU)
    assert all(isinstance(block.norm, nn.LayerNorm) for block in model.layers)
    assert abs(model.token_embeds.weight.std().item() - 0.02) < 0.005
    biases = [m.bias for m in model.modules() if isinstance(m, nn.Linear) and m.bias is not None]
    assert biases and all((b == 0).all() for b in biases)
    logits = model(torch.randint(0, 16, (3, 10)))
    assert logits.shape == (3, 10, 16)


def test_mixer_options_reach_the_mixer():
    model = build_model("hlru-m2", 16, vocab_size=8, seq_len=6, d_model=16, norm="sigmoid", backend="reference",
                        backbone_norm="rmsnorm")
    assert model.layers[0].layer.norm == "sigmoid" and model.layers[2].layer.backend == "reference"
    assert isinstance(model.norm, nn.RMSNorm)
    with pytest.raises(ValueError, match="mixer option: got 'norm' for lstm"):
        build_model("lstm", 16, vocab_size=8, seq_len=6, d_model=16, norm="sigmoid")


def test_language_model_is_causal():
    torch.manual_seed(0)
    model = build_model("gdn", 64, vocab_size=12, seq_len=16, d_model=16)
    tokens = torch.randint(0, 12, (2, 9))
    changed = tokens.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 12
    torch.testing.assert_close(model(changed)[:, :6], model(tokens)[:, :6])


def test_autoencoder_decodes_every_position_from_last_state():
    torch.manual_seed(0)
    model = build_model("lstm", 64, vocab_size=16, seq_len=12, d_model=16, backbone="autoencoder")
    tokens = torch.randint(0, 16, (2, 12))
    logits = model(tokens)
    assert logits.shape == (2, 12, 16)
    code = model.encode(tokens)
    torch.testing.assert_close(logits, model.decode(code, 12))
    changed = tokens.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 16
    assert not torch.allclose(model(changed)[:, 5], logits[:, 5]), "early tokens must reach every output"


def test_autoencoder_reinit_pitfall():
    """MAD's hook redraws the mixers' Linear weights ~ N(0, 0.02²)."""
    kwargs = dict(vocab_size=16, seq_len=8, d_model=64, backbone="autoencoder")
    torch.manual_seed(0)
    mad = build_model("mamba2", 512, **kwargs)
    assert abs(mad.encoder[0].layer.in_proj.weight.std().item() - 0.02) < 0.002


def test_autoencoder_learned_positions():
    torch.manual_seed(0)
    model = build_model("lru", 32, vocab_size=8, seq_len=6, d_model=16, backbone="autoencoder",
                        positions="learned")
    assert isinstance(model, AutoEncoder) and model.pos_embeds.weight.shape == (6, 16)
    model(torch.randint(0, 8, (2, 6))).sum().backward()
    assert model.pos_embeds.weight.grad.abs().sum() > 0


def test_learned_positions_are_the_default_and_reach_encoder_and_decoder():
    """The fork's AutoEncoder adds one learned table to the encoder input and to the decoder input."""
    torch.manual_seed(0)
    model = build_model("lru", 32, vocab_size=8, seq_len=6, d_model=16, backbone="autoencoder")
    assert model.positions == "learned" and not hasattr(model, "dec_positions")
    tokens = torch.randint(0, 8, (2, 6))
    code, logits = model.encode(tokens), model(tokens)
    with torch.no_grad():
        model.pos_embeds.weight[5] += torch.linspace(-1, 1, 16)  # the last position: the pooled encoder input and a decoder query
    assert not torch.allclose(model.encode(tokens), code), "the encoder input carries the positions"
    torch.testing.assert_close(model.decode(code, 6)[:, :5], logits[:, :5])
    assert not torch.allclose(model.decode(code, 6)[:, 5], logits[:, 5]), "the decoder reads the same table"
    sincos = build_model("lru", 32, vocab_size=8, seq_len=6, d_model=16, backbone="autoencoder", positions="sincos")
    assert not hasattr(sincos, "pos_embeds") and sincos.dec_positions.shape == (6, 16)


@pytest.mark.parametrize("arch,width", [("mamba2", 512), ("lstm", 64), ("bdlru-m4", 64), ("gdn", 128)])
def test_fork_init_redraws_every_linear_weight(arch, width):
    """init='fork' (default): every Linear weight of the language model, mixers included, has std 0.02."""
    torch.manual_seed(0)
    model = build_model(arch, width, vocab_size=16, seq_len=8, d_model=128)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) > 5
    for m in linears:
        if m.weight.numel() >= 2000:
            assert m.weight.std().item() == pytest.approx(0.02, rel=0.1), m
            assert abs(m.weight.mean().item()) < 0.002
        assert m.bias is None or (m.bias == 0).all()


def test_mad_init_keeps_the_mixers_own_linear_init():
    """init='mad' (upstream MAD's LanguageModel): Linear weights keep their own init; biases are zeroed."""
    torch.manual_seed(0)
    mad = build_model("mamba2", 512, vocab_size=16, seq_len=8, d_model=128, n_layers=1, init="mad")
    torch.manual_seed(0)
    fresh = registry["mamba2"].build(128, 512)
    torch.testing.assert_close(mad.layers[0].layer.in_proj.weight, fresh.in_proj.weight)
    assert mad.layers[0].layer.in_proj.weight.std().item() != pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize("key,value,allowed", [
    ("backbone", "seq2seq", "lm, autoencoder"), ("backbone_norm", "batchnorm", "layernorm, rmsnorm"),
    ("channel_mixer", "moe", "swiglu, mlp"), ("n_layers", 0, "positive int"), ("positions", "rope", "sincos"),
    ("init", "xavier", "fork, mad"),
])
def test_bad_arguments_named(key, value, allowed):
    kwargs = dict(vocab_size=8, seq_len=6, d_model=16, backbone="autoencoder")
    kwargs[key] = value
    with pytest.raises(ValueError, match=rf"{key}: got {value!r}.*{allowed}"):
        build_model("lru", 32, **kwargs)


TRAIN_CASES = [(name, w) for name in sorted(registry) for w in registry[name].widths[:2]]


@pytest.mark.parametrize("name,width", TRAIN_CASES, ids=[f"{n}-w{w}" for n, w in TRAIN_CASES])
def test_one_training_step(name, width):
    """One AdamW step on a fixed batch lowers that batch's loss and updates every mixer."""
    torch.manual_seed(0)
    model = build_model(name, width, vocab_size=10, seq_len=12, d_model=16, n_layers=2)
    tokens = torch.randint(0, 10, (4, 12))
    targets = torch.roll(tokens, -1, dims=1)
    targets[:, -1] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_fn():
        return nn.functional.cross_entropy(model(tokens).flatten(0, 1), targets.flatten(), ignore_index=-100)

    before = loss_fn()
    before.backward()
    mixer = model.layers[0].layer
    start = [p.detach().clone() for p in mixer.parameters()]
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(start, mixer.parameters()))
    with torch.no_grad():
        assert loss_fn() < before
