"""Each penalty, the max-norm constraint and dropout against hand computations, in packs where
the members' settings differ: member 0 holds the tiny net below, the others other weights."""

from __future__ import annotations

import math

import pytest
import torch

from dropreg.config import Activation, DropoutConfig, L2Form, RegularizerConfig
from dropreg.dropout import PackedDropout
from dropreg.net import PackedMLP
from dropreg.regularizers import (KLSparsityPenalty, L1Penalty, L2Penalty, build_constraints, build_penalties)

W1 = [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]  # hidden 2 x input 3, as nn.Linear weights [out, in]
B1 = [0.5, -0.5]
W2 = [[2.0, -1.0], [0.25, 4.0]]  # output 2 x hidden 2
B2 = [1.0, -3.0]
SUM_W2 = 1 + 4 + 0.25 + 0 + 9 + 1 + 4 + 1 + 0.0625 + 16  # Σ w² over both weight matrices = 36.3125
SUM_B2 = 0.25 + 0.25 + 1 + 9  # Σ b² = 10.5
SUM_ABS_W = 1 + 2 + 0.5 + 0 + 3 + 1 + 2 + 1 + 0.25 + 4  # 14.75
SUM_ABS_B = 0.5 + 0.5 + 1 + 3  # 5


def regs(*configs: dict) -> list[RegularizerConfig]:
    """RegularizerConfigs from {'l2.weight': 0.1, ...} dicts."""
    out = []
    for c in configs:
        r = RegularizerConfig()
        for key, value in c.items():
            group, name = key.split(".")
            setattr(getattr(r, group), name, value)
        out.append(r)
    return out


@pytest.fixture
def tiny() -> PackedMLP:
    """A pack of 3: member 0 is the net above, members 1 and 2 hold other (random) weights."""
    net = PackedMLP(3, 3, [2], 2, Activation.relu)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.normal_()
            layer.bias.normal_()
        net.layers[0].weight[0].copy_(torch.tensor(W1).t())
        net.layers[0].bias[0].copy_(torch.tensor(B1))
        net.layers[1].weight[0].copy_(torch.tensor(W2).t())
        net.layers[1].bias[0].copy_(torch.tensor(B2))
    return net


NO_UPDATE = torch.zeros(1, dtype=torch.long)


@pytest.mark.parametrize("form, biases, expected", [
    (L2Form.sum, False, 0.1 * SUM_W2),
    (L2Form.sum, True, 0.1 * (SUM_W2 + SUM_B2)),
    (L2Form.half_sum, False, 0.1 * 0.5 * SUM_W2),
    (L2Form.half_sum, True, 0.1 * 0.5 * (SUM_W2 + SUM_B2)),
])
def test_l2(tiny, form, biases, expected):
    pack = regs({"l2.weight": 0.1, "l2.form": form, "l2.include_biases": biases}, {}, {"l2.weight": 0.5})
    value, on = L2Penalty(pack, Activation.relu, 100)(tiny, [], NO_UPDATE)
    assert float(value[0]) == pytest.approx(expected, rel=1e-6)
    assert float(value[1]) == 0.0 and on.tolist() == [1.0, 0.0, 1.0]  # member 1 has no L2


def test_l2_gradient_is_weight_decay_of_its_own_member_only(tiny):
    value, _ = L2Penalty(regs({"l2.weight": 0.1}, {}, {}), Activation.relu, 100)(tiny, [], NO_UPDATE)
    value.sum().backward()
    assert torch.allclose(tiny.layers[1].weight.grad[0], 0.2 * torch.tensor(W2).t())
    assert torch.equal(tiny.layers[1].weight.grad[1:], torch.zeros_like(tiny.layers[1].weight.grad[1:]))
    assert tiny.layers[1].bias.grad is None


@pytest.mark.parametrize("biases, expected", [(False, 0.01 * SUM_ABS_W), (True, 0.01 * (SUM_ABS_W + SUM_ABS_B))])
def test_l1(tiny, biases, expected):
    value, _ = L1Penalty(regs({"l1.weight": 0.01, "l1.include_biases": biases}, {}, {}), Activation.relu, 100)(
        tiny, [], NO_UPDATE)
    assert float(value[0]) == pytest.approx(expected, rel=1e-6)


def test_l1_late_start_is_off_before_its_update(tiny):
    late = L1Penalty(regs({"l1.weight": 0.01, "l1.start_fraction": 0.75}, {"l1.weight": 0.01}, {}), Activation.relu,
                     1000)
    assert late.start_update.tolist()[:2] == [750, 0]
    value, on = late(tiny, [], torch.tensor([749]))
    assert on.tolist() == [0.0, 1.0, 0.0] and float(value[0]) == 0.0
    value, on = late(tiny, [], torch.tensor([750]))
    assert on.tolist() == [1.0, 1.0, 0.0] and float(value[0]) == pytest.approx(0.01 * SUM_ABS_W)


def test_build_penalties_only_what_some_member_uses(tiny):
    pack = regs({"l1.weight": 0.01, "l2.weight": 0.1}, {"kl_sparsity.weight": 0.0}, {})
    built = build_penalties(pack, Activation.relu, 100)
    assert [p.name for p in built] == ["l2", "l1"]
    total = sum(float(p(tiny, [], NO_UPDATE)[0][0]) for p in built)
    assert total == pytest.approx(0.01 * SUM_ABS_W + 0.1 * SUM_W2, rel=1e-6)
    assert build_penalties(regs({}, {}), Activation.relu, 100) == []


def _kl(rho: float, q: float) -> float:
    return rho * math.log(rho / q) + (1 - rho) * math.log((1 - rho) / (1 - q))


def test_kl_sparsity_relu_by_hand():
    # member 0: a batch of 2 examples, 2 hidden units; ReLU activity = 1 - exp(-a)
    a = torch.tensor([[[0.0, 2.0], [1.0, 0.5]], [[5.0, 5.0], [5.0, 5.0]]])
    q0 = ((1 - math.exp(0.0)) + (1 - math.exp(-1.0))) / 2
    q1 = ((1 - math.exp(-2.0)) + (1 - math.exp(-0.5))) / 2
    pen = KLSparsityPenalty(regs({"kl_sparsity.weight": 0.3}, {"kl_sparsity.weight": 1.0, "kl_sparsity.target": 0.5}),
                            Activation.relu, 100)
    value, _ = pen(None, [a], NO_UPDATE)
    assert float(value[0]) == pytest.approx(0.3 * (_kl(0.05, q0) + _kl(0.05, q1)), rel=1e-5)
    q = 1 - math.exp(-5.0)
    assert float(value[1]) == pytest.approx(2 * _kl(0.5, q), rel=1e-5)  # its own ρ and β


def test_kl_sparsity_logistic_sums_layers():
    a1, a2 = torch.tensor([[[0.2, 0.6], [0.4, 0.2]]]), torch.tensor([[[0.1], [0.3]]])
    pen = KLSparsityPenalty(regs({"kl_sparsity.weight": 2.0, "kl_sparsity.target": 0.1}), Activation.logistic, 100)
    expected = 2.0 * (_kl(0.1, 0.3) + _kl(0.1, 0.4) + _kl(0.1, 0.2))
    assert float(pen(None, [a1, a2], NO_UPDATE)[0][0]) == pytest.approx(expected, rel=1e-5)


def test_kl_is_zero_at_target_and_pushes_activity_down():
    pen = KLSparsityPenalty(regs({"kl_sparsity.weight": 1.0}), Activation.relu, 100)
    a = torch.full((1, 4, 3), -math.log(1 - 0.05), requires_grad=True)  # activity exactly ρ = 0.05
    assert float(pen(None, [a], NO_UPDATE)[0][0]) == pytest.approx(0.0, abs=1e-6)
    busy = torch.full((1, 4, 3), 2.0, requires_grad=True)
    pen(None, [busy], NO_UPDATE)[0].sum().backward()
    assert (busy.grad > 0).all()  # gradient descent lowers over-active units


def test_max_norm_scales_long_units_only_and_per_member(tiny):
    # incoming norms of member 0's hidden units: sqrt(5.25) ≈ 2.29 and sqrt(10) ≈ 3.16; with c = 3
    # only the second is long. Member 1 has no constraint, member 2 a tiny radius.
    with torch.no_grad():
        tiny.layers[0].weight[1].mul_(100.0)
    before = [layer.weight.detach().clone() for layer in tiny.layers]
    (c,) = build_constraints(regs({"max_norm.radius": 3.0}, {}, {"max_norm.radius": 0.01}))
    c.apply(tiny)
    after = tiny.layers[0].weight.detach()
    assert torch.equal(after[0][:, 0], before[0][0][:, 0])  # under c: exactly unchanged
    assert float(after[0][:, 1].norm()) == pytest.approx(3.0, rel=1e-5)
    assert torch.allclose(after[0][:, 1], before[0][0][:, 1] * 3.0 / math.sqrt(10.0), rtol=1e-5)  # direction kept
    assert torch.equal(after[1], before[0][1])  # no constraint: untouched, however long
    assert float(after[2].norm(dim=0).max()) <= 0.01 * (1 + 1e-5)
    assert torch.equal(tiny.layers[1].weight, before[1])  # output layer not constrained


def test_no_constraint_without_radius():
    assert build_constraints(regs({}, {})) == []


@pytest.mark.parametrize("retain", [0.8, 0.5])
def test_dropout_keeps_expected_activation_and_only_where_asked(retain):
    configs = [DropoutConfig(input_retain=retain, hidden_retain=0.5), DropoutConfig()]
    drop = PackedDropout(configs, [2000, 4], batch_size=50)
    drop.reseed([1, 2], update=0)
    masks = drop.draw()
    inputs = masks[0][0]  # member 0's input mask [50, 2000]
    assert float((inputs != 0).float().mean()) == pytest.approx(retain, abs=0.01)
    assert float(inputs.mean()) == pytest.approx(1.0, abs=0.02)  # inverted dropout: E[mask] = 1
    assert torch.equal(inputs[inputs != 0], torch.full_like(inputs[inputs != 0], 1 / retain))
    assert torch.equal(masks[0][1], torch.ones(50, 2000)) and torch.equal(masks[1][1], torch.ones(50, 4))
    assert drop.drawing == [0]


def test_dropout_masks_depend_on_seed_and_update_only():
    a = PackedDropout([DropoutConfig(input_retain=0.8)] * 2, [30], batch_size=4)
    b = PackedDropout([DropoutConfig(), DropoutConfig(input_retain=0.8)], [30], batch_size=4)
    a.reseed([7, 9], update=500)
    b.reseed([3, 7], update=500)  # seed 7 in another slot, beside another mate
    assert torch.equal(a.draw()[0][0], b.draw()[0][1])
    a.reseed([7, 9], update=1000)
    b.reseed([3, 7], update=500)
    assert not torch.equal(a.draw()[0][0], b.draw()[0][1])
