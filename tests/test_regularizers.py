"""Each penalty's value, the max-norm constraint and dropout against hand computations, in packs
where the members' settings differ: member 0 holds the tiny net below, the others other weights.
(Their gradients and the SGD step against autograd and torch.optim.SGD: tests/test_ops.py.)"""

from __future__ import annotations

import math

import pytest
import torch

from dropreg.schema import Activation, DropoutConfig, L2Form, RegularizerConfig
from dropreg.dropout import PackedDropout
from dropreg.net import PackedMLP
from dropreg.regularizers import Regularizers, pack_order

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


def built(*configs: dict, max_updates: int = 100, activation=Activation.relu) -> Regularizers:
    return Regularizers(regs(*configs), activation, max_updates)


def penalty(r: Regularizers, name: str):
    (p,) = [p for p in (*r.weight_penalties, *r.activity_penalties) if p.name == name]
    return p


@pytest.mark.parametrize("form, biases, expected", [
    (L2Form.sum, False, 0.1 * SUM_W2),
    (L2Form.sum, True, 0.1 * (SUM_W2 + SUM_B2)),
    (L2Form.half_sum, False, 0.1 * 0.5 * SUM_W2),
    (L2Form.half_sum, True, 0.1 * 0.5 * (SUM_W2 + SUM_B2)),
])
def test_l2(tiny, form, biases, expected):
    l2 = penalty(built({"l2.weight": 0.1, "l2.form": form, "l2.include_biases": biases}, {}, {"l2.weight": 0.5}), "l2")
    value = l2.value(tiny, 3)
    assert float(value[0]) == pytest.approx(expected, rel=1e-6)
    assert float(value[1]) == 0.0 and l2.slots.indices == [0, 2]  # member 1 has no L2, and costs nothing


@pytest.mark.parametrize("biases, expected", [(False, 0.01 * SUM_ABS_W), (True, 0.01 * (SUM_ABS_W + SUM_ABS_B))])
def test_l1(tiny, biases, expected):
    l1 = penalty(built({"l1.weight": 0.01, "l1.include_biases": biases}, {}, {}), "l1")
    assert float(l1.value(tiny, 3)[0]) == pytest.approx(expected, rel=1e-6) and l1.slots.indices == [0]


def test_l1_late_start_is_off_before_its_update(tiny):
    late = penalty(built({"l1.weight": 0.01, "l1.start_fraction": 0.75}, {"l1.weight": 0.01}, {}, max_updates=1000),
                   "l1")
    assert late.start == [750, 0]
    assert late.on(torch.tensor([749])).tolist() == [0.0, 1.0]
    assert late.on(torch.tensor([750])).tolist() == [1.0, 1.0]


def test_only_what_some_member_uses_is_built():
    r = built({"l1.weight": 0.01, "l2.weight": 0.1}, {"kl_sparsity.weight": 0.0}, {})
    assert r.penalty_names == ["l2", "l1"] and r.max_norm is None
    assert built({}, {}).penalty_names == []


def _kl(rho: float, q: float) -> float:
    return rho * math.log(rho / q) + (1 - rho) * math.log((1 - rho) / (1 - q))


def test_kl_sparsity_relu_by_hand():
    # member 0: a batch of 2 examples, 2 hidden units; ReLU activity = 1 - exp(-a)
    a = torch.tensor([[[0.0, 2.0], [1.0, 0.5]], [[5.0, 5.0], [5.0, 5.0]]])
    q0 = ((1 - math.exp(0.0)) + (1 - math.exp(-1.0))) / 2
    q1 = ((1 - math.exp(-2.0)) + (1 - math.exp(-0.5))) / 2
    pen = penalty(built({"kl_sparsity.weight": 0.3}, {"kl_sparsity.weight": 1.0, "kl_sparsity.target": 0.5}),
                  "kl_sparsity")
    value, activity = pen([a])
    assert float(value[0]) == pytest.approx(0.3 * (_kl(0.05, q0) + _kl(0.05, q1)), rel=1e-5)
    q = 1 - math.exp(-5.0)
    assert float(value[1]) == pytest.approx(2 * _kl(0.5, q), rel=1e-5)  # its own ρ and β
    assert activity.tolist() == pytest.approx([(q0 + q1) / 2, q], rel=1e-5)  # mean over units


def test_kl_sparsity_logistic_sums_layers():
    a1, a2 = torch.tensor([[[0.2, 0.6], [0.4, 0.2]]]), torch.tensor([[[0.1], [0.3]]])
    pen = penalty(built({"kl_sparsity.weight": 2.0, "kl_sparsity.target": 0.1}, activation=Activation.logistic),
                  "kl_sparsity")
    expected = 2.0 * (_kl(0.1, 0.3) + _kl(0.1, 0.4) + _kl(0.1, 0.2))
    value, activity = pen([a1, a2])
    assert float(value[0]) == pytest.approx(expected, rel=1e-5)
    assert float(activity[0]) == pytest.approx((0.3 + 0.4 + 0.2) / 3, rel=1e-5)  # every unit of every layer


def test_kl_is_zero_at_target_and_pushes_activity_down():
    pen = penalty(built({"kl_sparsity.weight": 1.0}), "kl_sparsity")
    a = torch.full((1, 4, 3), -math.log(1 - 0.05), requires_grad=True)  # activity exactly ρ = 0.05
    assert float(pen([a])[0][0]) == pytest.approx(0.0, abs=1e-6)
    busy = torch.full((1, 4, 3), 2.0, requires_grad=True)
    pen([busy])[0].sum().backward()
    assert (busy.grad > 0).all()  # gradient descent lowers over-active units


def test_max_norm_scales_long_units_only_and_per_member(tiny):
    # incoming norms of member 0's hidden units: sqrt(5.25) ≈ 2.29 and sqrt(10) ≈ 3.16; with c = 3
    # only the second is long. Member 1 has no constraint, member 2 a tiny radius.
    with torch.no_grad():
        tiny.layers[0].weight[1].mul_(100.0)
    before = [layer.weight.detach().clone() for layer in tiny.layers]
    c = built({"max_norm.radius": 3.0}, {}, {"max_norm.radius": 0.01}).max_norm
    assert c.slots.indices == [0, 2] and not c.slots.contiguous  # the gather/scatter path
    c.apply(tiny)
    after = tiny.layers[0].weight.detach()
    assert torch.equal(after[0][:, 0], before[0][0][:, 0])  # under c: exactly unchanged
    assert float(after[0][:, 1].norm()) == pytest.approx(3.0, rel=1e-5)
    assert torch.allclose(after[0][:, 1], before[0][0][:, 1] * 3.0 / math.sqrt(10.0), rtol=1e-5)  # direction kept
    assert torch.equal(after[1], before[0][1])  # no constraint: untouched, however long
    assert float(after[2].norm(dim=0).max()) <= 0.01 * (1 + 1e-5)
    assert torch.equal(tiny.layers[1].weight, before[1])  # output layer not constrained


def test_no_constraint_without_radius():
    assert built({}, {}).max_norm is None


def test_pack_order_makes_every_table9_need_contiguous():
    rows = [{}, {"l2.weight": 1e-4}, {"l2.weight": 1e-4, "l1.weight": 1e-5},
            {"l2.weight": 1e-4, "kl_sparsity.weight": 1e-3}, {"max_norm.radius": 2.0},
            {"dropout.input_retain": 0.8, "dropout.hidden_retain": 0.5},
            {"dropout.hidden_retain": 0.5, "l2.weight": 1e-4}, {"dropout.hidden_retain": 0.5, "max_norm.radius": 2.0}]
    configs = regs(*(rows * 3))  # 24 members as the paper preset packs them
    order = pack_order(configs)
    assert sorted(order) == list(range(24))
    r = Regularizers([configs[k] for k in order], Activation.relu, 100)
    assert all(p.slots.contiguous for p in (*r.weight_penalties, *r.activity_penalties, r.max_norm))


@pytest.mark.parametrize("retain", [0.8, 0.5])
def test_dropout_keeps_expected_activation_and_only_where_asked(retain):
    configs = [DropoutConfig(input_retain=retain, hidden_retain=0.5), DropoutConfig()]
    drop = PackedDropout(configs, [2000, 4], batch_size=50)
    drop.reseed([1, 2], update=0)
    drop.draw()
    inputs = drop.apply(0, torch.ones(2, 50, 2000))[0]  # member 0's input mask [50, 2000]
    assert float((inputs != 0).float().mean()) == pytest.approx(retain, abs=0.01)
    assert float(inputs.mean()) == pytest.approx(1.0, abs=0.02)  # inverted dropout: E[mask] = 1
    assert torch.equal(inputs[inputs != 0], torch.full_like(inputs[inputs != 0], 1 / retain))
    assert torch.equal(drop.apply(0, torch.ones(2, 50, 2000))[1], torch.ones(50, 2000))  # member 1: none
    assert torch.equal(drop.apply(1, torch.ones(2, 50, 4))[1], torch.ones(50, 4))
    assert drop.drawing == [0]


def test_dropout_masks_depend_on_seed_and_update_only():
    a = PackedDropout([DropoutConfig(input_retain=0.8)] * 2, [30], batch_size=4)
    b = PackedDropout([DropoutConfig(), DropoutConfig(input_retain=0.8)], [30], batch_size=4)
    ones = torch.ones(2, 4, 30)

    def masks(drop, seeds, update):
        drop.reseed(seeds, update=update)
        drop.draw()
        return drop.apply(0, ones)

    # seed 7 in another slot, beside another mate
    assert torch.equal(masks(a, [7, 9], 500)[0], masks(b, [3, 7], 500)[1])
    assert not torch.equal(masks(a, [7, 9], 1000)[0], masks(b, [3, 7], 500)[1])
