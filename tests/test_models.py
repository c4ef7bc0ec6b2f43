"""Tests of src.models: shapes, shared backbone, attention placement and effect, determinism, precision, summary."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from monai.networks.nets import UNet

from src.models import AttentionUNet3D, build_model, model_from_config
from src.models.blocks.ag import AttentionGate
from src.models.blocks.cbam import CBAM, ChannelAttention, SpatialAttention
from src.models.blocks.se import SqueezeExcitation
from src.models.summary import format_model_table, model_table
from src.params import load_params
from tests.conftest import REPO

STUDY_MODELS = load_params(REPO / "params.yaml").study.models  # the study's models: attention and its options
MODEL_NAMES = tuple(STUDY_MODELS)
CHANNELS = ((16, 32, 64, 128), (32, 64, 128, 256))
PATCHES = ((32, 64, 64), (32, 96, 96), (32, 128, 128))
SMALL = (16, 16, 16)  # smallest size the 3-downsampling networks accept: every property below is size-independent
VARIANTS = ("unet_ag", "unet_se", "unet_cbam")
SIGMOIDS = {"unet_ag": 3, "unet_se": 4, "unet_cbam": 8}  # one per gate, per SE block; CBAM has channel + spatial


def _build(name: str, channels=CHANNELS[0], seed: int = 0, **kwargs) -> AttentionUNet3D:
    torch.manual_seed(seed)
    spec = STUDY_MODELS[name]
    return build_model(spec.attention, channels, attention_kwargs=spec.attention_kwargs, **kwargs)


def _input(size=SMALL, batch: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 1, *size, generator=torch.Generator().manual_seed(seed))


def _variant_with_baseline_weights(name: str) -> tuple[AttentionUNet3D, AttentionUNet3D]:
    baseline = _build("unet").eval()
    variant = _build(name, seed=5).eval()
    result = variant.load_state_dict(baseline.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all("attention" in key for key in result.missing_keys)
    return baseline, variant


@pytest.mark.parametrize("channels", CHANNELS, ids=lambda c: f"c{c[0]}")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shape_on_every_patch_size(name, channels):
    model = _build(name, channels).eval()
    with torch.no_grad():
        for patch in PATCHES:
            assert model(torch.zeros(1, 1, *patch)).shape == (1, 7, *patch)


def test_out_channels_is_an_option():
    model = _build("unet_cbam", out_channels=3).eval()
    with torch.no_grad():
        assert model(_input()).shape == (1, 3, *SMALL)


@pytest.mark.parametrize("channels", CHANNELS, ids=lambda c: f"c{c[0]}")
def test_baseline_is_monai_unet(channels):
    """Same parameter count as MONAI's UNet, and the same output once its weights are copied level by level."""
    torch.manual_seed(0)
    monai_unet = UNet(3, 1, 7, channels=channels, strides=(2, 2, 2), num_res_units=2).eval()
    ours = _build("unet", channels).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in monai_unet.parameters())
    level, down, up = monai_unet.model, [], []
    for _ in range(len(channels) - 2):
        down.append(level[0])
        up.append(level[2])
        level = level[1].submodule
    down += [level[0], level[1].submodule]  # deepest down block and the bottleneck
    up.append(level[2])
    for mine, theirs in zip([*ours.encoder, *ours.decoder], down + up, strict=True):
        mine.load_state_dict(theirs.state_dict())
    x = _input((16, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), monai_unet(x), rtol=0, atol=0)


@pytest.mark.parametrize("channels", CHANNELS, ids=lambda c: f"c{c[0]}")
@pytest.mark.parametrize("name", VARIANTS)
def test_variants_only_add_attention_modules(name, channels):
    baseline = _build("unet", channels).state_dict()
    variant = _build(name, channels).state_dict()
    assert set(baseline) < set(variant)
    assert all(variant[key].shape == baseline[key].shape for key in baseline)
    extra = set(variant) - set(baseline)
    assert extra and all("attention" in key for key in extra)
    assert not any("attention" in key for key in baseline)


@pytest.mark.parametrize("name", VARIANTS)
def test_attention_changes_output_and_unit_gates_restore_baseline(name):
    baseline, variant = _variant_with_baseline_weights(name)
    x = _input(batch=2)
    with torch.no_grad():
        expected = baseline(x)
        assert not torch.allclose(variant(x), expected, atol=1e-4)

        # Force every attention coefficient (each sigmoid inside an attention module) to 1: the gate then passes its
        # input unchanged, so the variant must reproduce the baseline exactly.
        sigmoids = [m for key, m in variant.named_modules() if "attention" in key and isinstance(m, nn.Sigmoid)]
        assert len(sigmoids) == SIGMOIDS[name]
        handles = [m.register_forward_hook(lambda _m, _i, out: torch.ones_like(out)) for m in sigmoids]
        try:
            torch.testing.assert_close(variant(x), expected, rtol=0, atol=0)
        finally:
            for handle in handles:
                handle.remove()


def _record(store: dict, key, what: str = "out"):
    """A forward hook (with kwargs) that stores the call's args, kwargs or output under `key` and changes nothing."""

    def hook(_module, args, kwargs, out):
        store[key] = {"args": args, "kwargs": kwargs, "out": out}[what]

    return hook


def _trace(model: AttentionUNet3D, x: torch.Tensor) -> dict[str, dict]:
    """Inputs and outputs of every encoder, decoder and attention module in one forward pass."""
    seen = {k: {} for k in ("enc_in", "enc_out", "dec_in", "dec_out", "att_in", "att_kwargs", "att_out")}
    for i, block in enumerate(model.encoder):
        block.register_forward_hook(_record(seen["enc_in"], i, "args"), with_kwargs=True)
        block.register_forward_hook(_record(seen["enc_out"], i), with_kwargs=True)
    for i, block in enumerate(model.decoder):
        block.register_forward_hook(_record(seen["dec_in"], i, "args"), with_kwargs=True)
        block.register_forward_hook(_record(seen["dec_out"], i), with_kwargs=True)
    for i, att in enumerate(model.encoder_attention or model.skip_attention):
        att.register_forward_hook(_record(seen["att_in"], i, "args"), with_kwargs=True)
        att.register_forward_hook(_record(seen["att_kwargs"], i, "kwargs"), with_kwargs=True)
        att.register_forward_hook(_record(seen["att_out"], i), with_kwargs=True)
    with torch.no_grad():
        model(x)
    return seen


@pytest.mark.parametrize("name", ["unet_se", "unet_cbam"])
def test_se_and_cbam_follow_every_encoder_block_including_bottleneck(name):
    model = _build(name).eval()
    seen = _trace(model, _input())
    n = len(model.encoder)
    assert len(model.encoder_attention) == n and model.skip_attention is None
    for i in range(n):
        assert seen["att_in"][i][0] is seen["enc_out"][i]  # attention i acts on encoder output i
    for i in range(n - 1):  # the attended features feed the next level and are the skip
        assert seen["enc_in"][i + 1][0] is seen["att_out"][i]
        c = seen["att_out"][i].shape[1]
        torch.testing.assert_close(seen["dec_in"][i][0][:, :c], seen["att_out"][i], rtol=0, atol=0)
    # the bottleneck's attended output is the first decoder signal
    c = seen["att_out"][n - 2].shape[1]
    torch.testing.assert_close(seen["dec_in"][n - 2][0][:, c:], seen["att_out"][n - 1], rtol=0, atol=0)


def test_attention_gates_gate_every_skip_with_the_upsampled_decoder_signal():
    model = _build("unet_ag").eval()
    seen = _trace(model, _input())
    n = len(model.encoder)
    assert len(model.skip_attention) == n - 1 and model.encoder_attention is None
    for i in range(n - 1):
        kwargs, out = seen["att_kwargs"][i], seen["att_out"][i]
        assert kwargs["x"] is seen["enc_out"][i]  # the skip of level i ...
        below = seen["dec_out"][i + 1] if i + 1 < n - 1 else seen["enc_out"][n - 1]
        assert kwargs["g"] is below  # ... gated by the decoder signal from the coarser level (or the bottleneck)
        assert kwargs["g"].shape[2:] == kwargs["x"].shape[2:]  # after its upsampling: at the skip's resolution
        torch.testing.assert_close(seen["dec_in"][i][0][:, : out.shape[1]], out, rtol=0, atol=0)


def test_attention_gate_rejects_mismatched_resolution():
    gate = AttentionGate(3, in_channels=8, gating_channels=16)
    with pytest.raises(ValueError, match="spatial size"):
        gate(g=torch.zeros(1, 16, 4, 4, 4), x=torch.zeros(1, 8, 8, 8, 8))


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_every_attention_parameter(name):
    model = _build(name)
    x = _input(batch=2)
    # Train mode: every attention parameter is in the graph.
    model.train()
    model(x).square().mean().backward()
    attention = {key: p for key, p in model.named_parameters() if "attention" in key}
    assert attention and all(p.grad is not None and torch.isfinite(p.grad).all() for p in attention.values())
    # Eval mode: every attention parameter also gets a non-zero gradient. (In train mode the AG's 1x1x1 convolution
    # biases, each directly followed by BatchNorm, have a zero gradient by construction: BN removes the batch mean.)
    model.zero_grad()
    model.eval()
    model(x).square().mean().backward()
    for key, p in attention.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, key


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_seed_fixes_initial_weights(name):
    first, again, other = (_build(name, seed=s).state_dict() for s in (0, 0, 1))
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert any(not torch.equal(first[key], other[key]) for key in first)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bf16_autocast_and_channels_last(name):
    model = _build(name).eval()
    x = _input(PATCHES[0])
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(x)
        model = model.to(memory_format=torch.channels_last_3d)
        channels_last = model(x.to(memory_format=torch.channels_last_3d))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            both = model(x.to(memory_format=torch.channels_last_3d))
    for out in (mixed, channels_last, both):
        assert out.shape == (1, 7, *PATCHES[0]) and torch.isfinite(out).all()
    torch.testing.assert_close(channels_last, reference, rtol=1e-4, atol=1e-4)
    assert (mixed.float() - reference).abs().mean() < 0.05 * reference.abs().mean()


def test_sliding_window_sizes_divisible_by_8_and_clear_error_otherwise():
    model = _build("unet_ag").eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 24, 40, 56)).shape == (1, 7, 24, 40, 56)
        for bad in ((33, 64, 64), (32, 64, 60)):
            with pytest.raises(ValueError, match="divisible by 8"):
                model(torch.zeros(1, 1, *bad))


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="ag, cbam, none, se"):
        AttentionUNet3D(attention="transformer")
    with pytest.raises(ValueError, match="ag, cbam, none, se"):
        build_model("unet_transformer", channels=CHANNELS[0])
    with pytest.raises(ValueError, match="rejects attention_kwargs"):
        build_model("se", channels=CHANNELS[0], attention_kwargs={"ratio": 8})


@pytest.mark.parametrize(
    "attention, kwargs, problem",
    [
        ("transformer", {}, "unknown attention 'transformer' (options: ag, cbam, none, se)"),
        ("se", {"ratio": 8}, "takes no option 'ratio' (its options: reduction)"),
        ("se", {"in_channels": 8}, "takes no option 'in_channels'"),  # the U-Net gives it, not params
        ("none", {"reduction": 8}, "takes no option 'reduction' (its options: none)"),
        ("se", {"reduction": 0}, "cannot be built with {'reduction': 0} at 16 channels"),
        ("cbam", {"reduction": 32}, "cannot be built with {'reduction': 32} at 16 channels"),
        ("cbam", {"kernel_size": 4}, "positive odd number"),
        ("ag", {"inter_channels": -1}, "cannot be built with {'inter_channels': -1}"),
    ],
)
def test_attention_options_are_checked_against_the_block(attention, kwargs, problem):
    from src.models.attention import attention_problem

    assert problem in attention_problem(attention, kwargs, (16, 32, 64, 128))


def test_the_study_models_pass_the_check_and_leave_the_seeded_stream_alone():
    from src.models.attention import attention_problem

    models = load_params(REPO / "params.yaml").study.models
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert [attention_problem(m.attention, m.attention_kwargs, (16, 32, 256)) for m in models.values()] == [None] * 4
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_config_round_trip(name):
    model = _build(name, channels=CHANNELS[1], out_channels=5, norm=("instance", {"affine": True}), dropout=0.1)
    config = json.loads(json.dumps(model.config))
    assert config["channels"] == list(CHANNELS[1]) and config["out_channels"] == 5
    rebuilt = model_from_config(config)
    assert rebuilt.attention == STUDY_MODELS[name].attention and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())  # strict: same modules, same shapes


def test_squeeze_excitation_computes_hu_et_al():
    se = SqueezeExcitation(3, in_channels=16, reduction=8)
    x = torch.randn(2, 16, 4, 5, 6)
    fc1, fc2 = se.fc[0], se.fc[2]
    s = torch.sigmoid(fc2(torch.relu(fc1(x.mean(dim=(2, 3, 4))))))
    torch.testing.assert_close(se(x), x * s[:, :, None, None, None])


def test_cbam_computes_channel_then_spatial_attention():
    cbam = CBAM(3, in_channels=16, reduction=4, kernel_size=7)
    assert isinstance(cbam.channel, ChannelAttention) and isinstance(cbam.spatial, SpatialAttention)
    assert cbam.spatial.conv.weight.shape == (1, 2, 7, 7, 7)
    x = torch.randn(2, 16, 4, 5, 6)
    mlp = cbam.channel.mlp
    mc = torch.sigmoid(mlp(x.mean(dim=(2, 3, 4))) + mlp(x.amax(dim=(2, 3, 4))))
    x1 = x * mc[:, :, None, None, None]
    ms = torch.sigmoid(cbam.spatial.conv(torch.cat([x1.mean(1, keepdim=True), x1.amax(1, keepdim=True)], dim=1)))
    torch.testing.assert_close(cbam(x), x1 * ms)


def test_model_table_on_a_tiny_setting():
    df = model_table(STUDY_MODELS, patch_sizes=(SMALL,), channel_configs=((8, 16, 32, 64),), out_channels=3)
    assert list(df.columns) == [
        "model",
        "channels",
        "params",
        "attention_params",
        "GMACs@16x16x16",
        "saved_act_MiB@16x16x16",
        "param_grad_adam_MiB",
    ]
    assert list(df["model"]) == list(MODEL_NAMES)
    for _, row in df.iterrows():
        spec = STUDY_MODELS[row["model"]]
        model = build_model(spec.attention, (8, 16, 32, 64), 3, spec.attention_kwargs)
        assert row["params"] == sum(p.numel() for p in model.parameters())
        assert row["GMACs@16x16x16"] > 0 and row["saved_act_MiB@16x16x16"] > 0
    assert (df["attention_params"] > 0).tolist() == [False, True, True, True]
    text = format_model_table(df)
    assert text.splitlines()[0].startswith("| model") and len(text.splitlines()) >= 2 + len(df)
