"""Presets against torchvision, and the analytic cost against fvcore on random specs."""

import dataclasses
import logging

import pytest
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from explorer import SqueezeSpec, build_model, estimate_cost, preset
from explorer.core.errors import SpecError
from explorer.design.cost import fvcore_cost

logging.getLogger("fvcore").setLevel(logging.ERROR)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def tv_fvcore(model, size):
    flops = FlopCountAnalysis(model.eval(), torch.zeros(1, 3, size, size))
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    return int(flops.total())


@pytest.mark.parametrize("name, params", [("squeezenet1_0", 1_248_424), ("squeezenet1_1", 1_235_496)])
def test_presets_are_torchvision_exactly(name, params):
    reference = getattr(torchvision.models, name)()
    ours = build_model(preset(name))
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.eval(), ours.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))
    assert n_params(reference) == params  # DOMAIN.md / the paper
    assert n_params(ours) == params
    cost = estimate_cost(preset(name))
    assert cost.params == params
    assert cost.macs == tv_fvcore(reference, 224)


def test_published_computation_of_the_presets():
    # torchvision's docs: 0.82 and 0.35 GFLOPS (multiply-adds) at 224x224; v1.1 is 2.4x less.
    macs_10 = estimate_cost(preset("squeezenet1_0")).macs
    macs_11 = estimate_cost(preset("squeezenet1_1")).macs
    assert round(macs_10 / 1e9, 2) == 0.82 and round(macs_11 / 1e9, 2) == 0.35
    assert 2.3 < macs_10 / macs_11 < 2.5  # the paper's "2.4x" is 0.82 / 0.35 = 2.34, rounded


def test_the_paper_model_size():
    # Paper: 4.8MB for SqueezeNet at fp32, i.e. 1,248,424 * 4 bytes in MiB.
    assert round(estimate_cost(preset("squeezenet1_0")).size_mib, 1) == 4.8


def test_pool_placement_changes_computation_not_parameters():
    early = SqueezeSpec(pools=(0, 1, 2))
    late = SqueezeSpec(pools=(0, 6, 7))
    assert estimate_cost(early).params == estimate_cost(late).params
    assert estimate_cost(late).macs > 1.5 * estimate_cost(early).macs


def test_init_matches_torchvision_statistics():
    model = build_model(preset("squeezenet1_0"))
    final = model.classifier[1].weight
    assert abs(final.std().item() - 0.01) < 0.001
    assert all(m.bias.abs().sum() == 0 for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_presets_keep_torchvision_head():
    # Dropout -> conv10 -> ReLU -> average pool, with no BatchNorm: torchvision's classifier.
    for name in ("squeezenet1_0", "squeezenet1_1"):
        kinds = [type(m) for m in build_model(preset(name)).classifier]
        assert kinds == [torch.nn.Dropout, torch.nn.Conv2d, torch.nn.ReLU, torch.nn.AdaptiveAvgPool2d]


def test_trainable_head_layers_and_cost_by_hand():
    # 4 Fire modules of 32 channels at 16 px, one pool after fire3: 16 -> 8 (ceil mode).
    tv = SqueezeSpec(stem="cifar", stem_width=16, base_e=32, incr_e=0, n_fire=4, pools=(3,),
                     batchnorm=True, num_classes=10, input_size=16)
    fixed = dataclasses.replace(tv, head_bn=True, head_relu=False)
    kinds = [type(m) for m in build_model(fixed).classifier]
    assert kinds == [torch.nn.BatchNorm2d, torch.nn.Dropout, torch.nn.Conv2d, torch.nn.AdaptiveAvgPool2d]
    a, b = estimate_cost(tv), estimate_cost(fixed)
    # BatchNorm on 32 channels: weight + bias = 64 parameters; eval-mode scale and shift on a
    # 32x8x8 map = 2 * 2048 multiply-adds; the ReLU costs nothing in either count.
    assert b.params - a.params == 64
    assert b.macs - a.macs == 2 * 32 * 8 * 8
    assert b.activations == a.activations
    no_relu = dataclasses.replace(tv, head_relu=False)
    assert (estimate_cost(no_relu).params, estimate_cost(no_relu).macs) == (a.params, a.macs)


def test_generated_networks_keep_torchvision_names():
    model = build_model(SqueezeSpec(stem="cifar", input_size=32, pools=(2, 5), bypass="complex",
                                    batchnorm=True, num_classes=10))
    names = {n for n, _ in model.named_parameters()}
    assert "features.4.squeeze.weight" in names and "features.4.expand3x3.weight" in names
    assert "classifier.1.weight" in names


STEM_SIZES = {"v1_0": (224,), "v1_1": (224,), "cifar": (32,)}


@st.composite
def specs(draw):
    n_fire = draw(st.integers(1, 8))
    stem = draw(st.sampled_from(["v1_0", "v1_1", "cifar"]))
    size = draw(st.sampled_from([32, 224]))
    pools = draw(st.lists(st.integers(0, n_fire), unique=True, max_size=4))
    spec_kwargs = dict(
        base_e=draw(st.integers(4, 48)), incr_e=draw(st.integers(0, 32)), freq=draw(st.integers(1, 4)),
        pct_3x3=draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 0.33])),
        sr=draw(st.sampled_from([0.125, 0.25, 0.5, 0.75, 1.0, 0.2])), n_fire=n_fire, stem=stem,
        stem_width=draw(st.sampled_from([None, 8, 24])), pools=pools,
        bypass=draw(st.sampled_from(["none", "simple", "complex"])),
        batchnorm=draw(st.booleans()), num_classes=draw(st.sampled_from([10, 100])), input_size=size,
        head_bn=draw(st.booleans()), head_relu=draw(st.booleans()))
    try:
        return SqueezeSpec(**spec_kwargs)
    except SpecError:
        assume(False)


@settings(max_examples=220, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(specs())
def test_analytic_cost_equals_fvcore_on_random_specs(spec):
    model = build_model(spec)
    cost = estimate_cost(spec)
    assert fvcore_cost(model, spec.input_size) == (cost.macs, cost.params, cost.activations)
    with torch.no_grad():
        feats = model.eval().features(torch.zeros(1, 3, spec.input_size, spec.input_size))
        out = torch.flatten(model.classifier(feats), 1)
    assert out.shape == (1, spec.num_classes)
    # The table's final map size is what the network really produces before the GAP.
    conv10 = next(r for r in cost.layers if r.name == "conv10")
    assert tuple(feats.shape[1:]) == (cost.layers[-3].out_shape[0],) + conv10.out_shape[1:]


def test_random_specs_cover_every_choice():
    # The strategy above must reach every stem, bypass, BatchNorm choice and both sizes.
    seen = set()

    @settings(max_examples=220, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
    @given(specs())
    def collect(spec):
        seen.update({("stem", spec.stem), ("bypass", spec.bypass), ("bn", spec.batchnorm),
                     ("size", spec.input_size), ("n_pools", len(spec.pools)),
                     ("head", spec.head_bn, spec.head_relu)})

    collect()
    for key in [("stem", s) for s in STEM_SIZES] + [("bypass", b) for b in ("none", "simple", "complex")]:
        assert key in seen
    assert {("bn", True), ("bn", False), ("size", 32), ("size", 224)} <= seen
    assert {("n_pools", k) for k in range(4)} <= seen
    assert {("head", bn, relu) for bn in (False, True) for relu in (False, True)} <= seen


def test_forward_backward_smoke_on_a_bypass_network():
    spec = SqueezeSpec(stem="cifar", stem_width=16, base_e=16, incr_e=16, pools=(3,), bypass="complex",
                       batchnorm=True, input_size=16, num_classes=10, n_fire=4)
    model = build_model(spec)
    loss = model(torch.randn(4, 3, 16, 16)).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
