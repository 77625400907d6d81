"""The spec: rounding rule, validation, identity and round trips (no torch needed)."""

import dataclasses
import json
import subprocess
import sys

import pytest

from explorer.core.errors import SpecError
from explorer.design.spec import SqueezeSpec, expand, load_spec, pool_out, round_half_up, spec_id


def widths(spec):
    return [(f.s1x1, f.e1x1, f.e3x3) for f in expand(spec).fires]


def test_squeezenet_widths_match_the_paper_table():
    # Paper Table 1 (s1x1, e1x1, e3x3) for fire2..fire9.
    assert widths(SqueezeSpec()) == [(16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
                                      (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]


def test_rounding_is_half_up_on_the_written_decimal():
    # 10 * 0.35 = 3.5 exactly in decimal -> 4 (the binary float 0.35 is a hair below).
    assert round_half_up(10, 0.35) == 4
    assert round_half_up(10, 0.25) == 3  # 2.5 -> 3, not banker's 2
    assert round_half_up(10, 0.24) == 2
    assert round_half_up(7, 0.5) == 4


def test_expand_widths_by_hand():
    spec = SqueezeSpec(base_e=10, incr_e=5, freq=3, pct_3x3=0.35, sr=0.25, n_fire=4, pools=())
    # e = 10, 10, 10, 15; e3 = 3.5->4, 4, 4, 5.25->5; s = 2.5->3, 3, 3, 3.75->4
    assert widths(spec) == [(3, 6, 4), (3, 6, 4), (3, 6, 4), (4, 10, 5)]
    assert [f.in_ch for f in expand(spec).fires] == [96, 10, 10, 10]


def test_zero_width_branches_are_allowed():
    assert widths(SqueezeSpec(pct_3x3=0.0, n_fire=1, pools=(0,)))[0] == (16, 128, 0)
    assert widths(SqueezeSpec(pct_3x3=1.0, n_fire=1, pools=(0,)))[0] == (16, 0, 128)


def test_bypass_follows_the_paper():
    simple = [f.shortcut for f in expand(SqueezeSpec(bypass="simple")).fires]
    # Paper section 6: identity around fire3, fire5, fire7, fire9.
    assert simple == ["none", "identity"] * 4
    complex_ = [f.shortcut for f in expand(SqueezeSpec(bypass="complex")).fires]
    assert complex_ == ["conv", "identity"] * 4


@pytest.mark.parametrize("size, expected", [(109, 54), (111, 55), (55, 27), (27, 13), (13, 6),
                                            (4, 2), (2, 1)])
def test_ceil_mode_pool_sizes(size, expected):
    # torchvision v1.0 at 224: 109 -> 54 -> 27 -> 13; v1.1: 111 -> 55.
    assert pool_out(size) == expected


@pytest.mark.parametrize("kwargs, field", [
    ({"sr": 0.0}, "sr"), ({"sr": 1.5}, "sr"), ({"pct_3x3": -0.1}, "pct_3x3"),
    ({"base_e": 0}, "base_e"), ({"base_e": 12.5}, "base_e"), ({"freq": 0}, "freq"),
    ({"incr_e": -1}, "incr_e"), ({"stem": "resnet"}, "stem"), ({"bypass": "dense"}, "bypass"),
    ({"dropout": 1.0}, "dropout"), ({"num_classes": 0}, "num_classes"),
    ({"pools": (0, 9)}, "pools"), ({"pools": (0, 0)}, "pools"), ({"n_fire": 0}, "n_fire"),
    ({"batchnorm": "yes"}, "batchnorm"), ({"stem_width": 0}, "stem_width"),
    ({"sr": "0.5"}, "sr"), ({"input_size": 5}, "input_size"),
    ({"head_bn": "yes"}, "head_bn"), ({"head_relu": 1}, "head_relu"),
])
def test_invalid_fields_name_the_field(kwargs, field):
    with pytest.raises(SpecError) as err:
        SqueezeSpec(**kwargs)
    message = str(err.value)
    assert field in message and "\n" not in message


def test_squeeze_width_rounding_to_zero_is_an_error():
    with pytest.raises(SpecError, match="squeeze width of 0"):
        SqueezeSpec(base_e=4, incr_e=0, sr=0.1)


def test_pools_that_shrink_below_one_pixel_are_an_error():
    # 32 -> (v1_0 stem) 13 -> 6 -> 3 -> 1; a fourth pool has nothing left (torch agrees:
    # a 3x3/2 ceil-mode pool of a 1x1 map has output size 0).
    SqueezeSpec(input_size=32, pools=(0, 1, 2))
    with pytest.raises(SpecError, match="below 1x1"):
        SqueezeSpec(input_size=32, pools=(0, 1, 2, 3))


def test_spec_id_is_shared_by_metaparameters_that_round_alike():
    a = SqueezeSpec()
    assert spec_id(a) == spec_id(SqueezeSpec(stem_width=96))  # the v1_0 default width
    assert spec_id(a) == spec_id(SqueezeSpec(sr=0.1251))  # 16.01 -> 16, 32.03, 48.04, 64.05
    assert spec_id(a) == spec_id(SqueezeSpec(pools=[7, 0, 3]))
    assert spec_id(a) != spec_id(SqueezeSpec(sr=0.25))
    assert spec_id(a) != spec_id(SqueezeSpec(input_size=227))
    assert len(spec_id(a)) == 16


# spec_ids computed on main (a0dc70f) before the head knobs existed: stored studies and
# export files compare them, so a spec with torchvision's head must keep its id.
QUICKSTART_TRIAL0 = dict(base_e=48, incr_e=0, n_fire=6, stem="cifar", stem_width=32, pct_3x3=0.25,
                         sr=0.5, bypass="simple", pools=(2, 4), batchnorm=True, dropout=0.1,
                         num_classes=10, input_size=16)
PINNED_IDS = [
    (SqueezeSpec(), "dea43470ffa9c764"),  # squeezenet1_0
    (SqueezeSpec(stem="v1_1", pools=(0, 2, 4)), "f2a67861552fc2e7"),  # squeezenet1_1
    (SqueezeSpec(stem="cifar", stem_width=64, pools=(3, 7), batchnorm=True, dropout=0.2,
                 num_classes=10, input_size=32), "38b5fdf2641931a8"),  # squeezenet_cifar until now
    (SqueezeSpec(**QUICKSTART_TRIAL0), "ab9a6cfbae8f55b7"),
    (SqueezeSpec(stem="v1_1", base_e=24, incr_e=8, freq=3, pct_3x3=0.33, sr=0.75, n_fire=5, pools=(0, 2),
                 bypass="complex", num_classes=100, input_size=64, dropout=0.0), "85aed98690fe18dc"),
]


@pytest.mark.parametrize("spec, pinned", PINNED_IDS)
def test_spec_id_of_torchvision_head_specs_is_unchanged(spec, pinned):
    assert spec_id(spec) == pinned
    assert spec_id(dataclasses.replace(spec, head_bn=False, head_relu=True)) == pinned


def test_another_head_is_another_network():
    base = SqueezeSpec(**QUICKSTART_TRIAL0)
    heads = [dataclasses.replace(base, head_bn=bn, head_relu=relu) for bn in (False, True) for relu in (False, True)]
    assert len({spec_id(s) for s in heads}) == 4  # each head is a different network
    assert [spec_id(s) == "ab9a6cfbae8f55b7" for s in heads] == [False, True, False, False]


def test_specs_stored_before_the_head_knobs_load_with_torchvision_head():
    old = {k: v for k, v in SqueezeSpec(**QUICKSTART_TRIAL0).to_dict().items() if not k.startswith("head_")}
    spec = SqueezeSpec.from_dict(old)
    assert (spec.head_bn, spec.head_relu) == (False, True)
    assert spec_id(spec) == "ab9a6cfbae8f55b7"


def test_spec_id_is_stable_across_processes():
    code = "from explorer.design.spec import SqueezeSpec, spec_id; print(spec_id(SqueezeSpec()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == spec_id(SqueezeSpec())


def test_round_trips_and_replace():
    spec = SqueezeSpec(stem="cifar", stem_width=32, pools=(2, 5), bypass="complex",
                       batchnorm=True, input_size=32, num_classes=10, sr=0.3, head_bn=True, head_relu=False)
    assert SqueezeSpec.from_dict(spec.to_dict()) == spec
    assert SqueezeSpec.from_json(spec.to_json()) == spec
    assert SqueezeSpec.from_yaml(spec.to_yaml()) == spec
    assert json.loads(spec.to_json())["pools"] == [2, 5]
    changed = dataclasses.replace(spec, sr=0.75)
    assert changed.sr == 0.75 and widths(changed)[0][0] == 96  # 0.75 * 128
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.sr = 0.5


def test_unknown_keys_are_rejected():
    with pytest.raises(SpecError, match="unknown spec field 'squeeze'"):
        SqueezeSpec.from_dict({"squeeze": 0.5})


def test_load_spec_reads_bare_and_export_files(tmp_path):
    spec = SqueezeSpec(sr=0.5)
    (tmp_path / "a.yaml").write_text(spec.to_yaml())
    (tmp_path / "b.json").write_text(json.dumps({"spec": spec.to_dict(), "provenance": {"trial": 3}}))
    assert load_spec(tmp_path / "a.yaml") == spec
    assert load_spec(tmp_path / "b.json") == spec


@pytest.mark.parametrize("text, needle", [("sr: [1, 2", "not valid YAML"), ("- 1\n- 2", "mapping"),
                                          ("sr: 7", "sr=7.0")])
def test_load_spec_errors_are_one_line(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert needle in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")


def test_spec_module_imports_no_torch():
    code = "import sys, explorer.design.spec, explorer.design.cost, explorer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
