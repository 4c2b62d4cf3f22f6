"""Each penalty and constraint against a hand computation on a tiny net."""

from __future__ import annotations

import math

import pytest
import torch

from dropreg.config import (Activation, DropoutConfig, L2Form, MaxNormConfig, ModelConfig,
                            RegularizerConfig)
from dropreg.model import MLP
from dropreg.regularizers import (KLSparsityPenalty, L1Penalty, L2Penalty, MaxNormConstraint,
                                  build_constraints, build_penalties)

W1 = [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]  # hidden 2 x input 3
B1 = [0.5, -0.5]
W2 = [[2.0, -1.0], [0.25, 4.0]]  # output 2 x hidden 2
B2 = [1.0, -3.0]
SUM_W2 = 1 + 4 + 0.25 + 0 + 9 + 1 + 4 + 1 + 0.0625 + 16  # Σ w² over both weight matrices = 36.3125
SUM_B2 = 0.25 + 0.25 + 1 + 9  # Σ b² = 10.5
SUM_ABS_W = 1 + 2 + 0.5 + 0 + 3 + 1 + 2 + 1 + 0.25 + 4  # 14.75
SUM_ABS_B = 0.5 + 0.5 + 1 + 3  # 5


@pytest.fixture
def tiny() -> MLP:
    net = MLP(3, 2, ModelConfig(name="tiny", hidden=[2]))
    with torch.no_grad():
        net.hidden_layers[0].weight.copy_(torch.tensor(W1))
        net.hidden_layers[0].bias.copy_(torch.tensor(B1))
        net.output_layer.weight.copy_(torch.tensor(W2))
        net.output_layer.bias.copy_(torch.tensor(B2))
    return net


@pytest.mark.parametrize("form, biases, expected", [
    (L2Form.sum, False, 0.1 * SUM_W2),
    (L2Form.sum, True, 0.1 * (SUM_W2 + SUM_B2)),
    (L2Form.half_sum, False, 0.1 * 0.5 * SUM_W2),
    (L2Form.half_sum, True, 0.1 * 0.5 * (SUM_W2 + SUM_B2)),
])
def test_l2(tiny, form, biases, expected):
    assert float(L2Penalty(0.1, form, biases)(tiny, [], 0)) == pytest.approx(expected, rel=1e-6)


def test_l2_gradient_is_weight_decay(tiny):
    L2Penalty(0.1, L2Form.sum)(tiny, [], 0).backward()
    assert torch.allclose(tiny.output_layer.weight.grad, 0.2 * torch.tensor(W2))
    assert tiny.output_layer.bias.grad is None


@pytest.mark.parametrize("biases, expected", [(False, 0.01 * SUM_ABS_W), (True, 0.01 * (SUM_ABS_W + SUM_ABS_B))])
def test_l1(tiny, biases, expected):
    assert float(L1Penalty(0.01, biases)(tiny, [], 0)) == pytest.approx(expected, rel=1e-6)


def test_l1_late_start_is_off_before_its_update(tiny):
    late = L1Penalty(0.01, start_update=750)
    assert late(tiny, [], 749) is None
    assert float(late(tiny, [], 750)) == pytest.approx(0.01 * SUM_ABS_W)


def test_l1_l2_config_sums_both(tiny):
    cfg = RegularizerConfig()
    cfg.l1.weight, cfg.l2.weight = 0.01, 0.1
    total = sum(float(p(tiny, [], 0)) for p in build_penalties(cfg, Activation.relu, 100))
    assert total == pytest.approx(0.01 * SUM_ABS_W + 0.1 * SUM_W2, rel=1e-6)


def test_late_l1_start_from_fraction():
    cfg = RegularizerConfig()
    cfg.l1.weight, cfg.l1.start_fraction = 0.01, 0.75
    (l1,) = build_penalties(cfg, Activation.relu, 1000)
    assert l1.start_update == 750


def _kl(rho: float, q: float) -> float:
    return rho * math.log(rho / q) + (1 - rho) * math.log((1 - rho) / (1 - q))


def test_kl_sparsity_relu_by_hand():
    # a batch of 2 examples, 2 hidden units; ReLU activity = 1 - exp(-a)
    a = torch.tensor([[0.0, 2.0], [1.0, 0.5]])
    q0 = ((1 - math.exp(0.0)) + (1 - math.exp(-1.0))) / 2
    q1 = ((1 - math.exp(-2.0)) + (1 - math.exp(-0.5))) / 2
    expected = 0.3 * (_kl(0.05, q0) + _kl(0.05, q1))
    got = KLSparsityPenalty(0.3, 0.05, Activation.relu)(None, [a], 0)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_kl_sparsity_logistic_sums_layers():
    a1, a2 = torch.tensor([[0.2, 0.6], [0.4, 0.2]]), torch.tensor([[0.1], [0.3]])
    expected = 2.0 * (_kl(0.1, 0.3) + _kl(0.1, 0.4) + _kl(0.1, 0.2))
    got = KLSparsityPenalty(2.0, 0.1, Activation.logistic)(None, [a1, a2], 0)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_kl_is_zero_at_target_and_pushes_activity_down():
    a = torch.full((4, 3), -math.log(1 - 0.05), requires_grad=True)  # activity exactly ρ = 0.05
    assert float(KLSparsityPenalty(1.0, 0.05, Activation.relu)(None, [a], 0)) == pytest.approx(0.0, abs=1e-6)
    busy = torch.full((4, 3), 2.0, requires_grad=True)
    KLSparsityPenalty(1.0, 0.05, Activation.relu)(None, [busy], 0).backward()
    assert (busy.grad > 0).all()  # gradient descent lowers over-active units


def test_max_norm_after_a_step_and_short_units_untouched(tiny):
    # row norms of W1: sqrt(5.25) ≈ 2.29 and sqrt(10) ≈ 3.16; with c = 3 only the second row is long
    opt = torch.optim.SGD(tiny.parameters(), lr=0.0)
    opt.zero_grad()
    tiny(torch.ones(1, 3)).sum().backward()
    opt.step()
    before = tiny.hidden_layers[0].weight.detach().clone()
    out_before = tiny.output_layer.weight.detach().clone()
    MaxNormConstraint(3.0).apply(tiny)
    after = tiny.hidden_layers[0].weight.detach()
    assert torch.equal(after[0], before[0])  # under c: exactly unchanged
    assert float(after[1].norm()) == pytest.approx(3.0, rel=1e-5)
    assert torch.allclose(after[1], before[1] * 3.0 / math.sqrt(10.0), rtol=1e-5)  # scaled, direction kept
    assert torch.equal(tiny.output_layer.weight, out_before)  # output layer not constrained


def test_max_norm_holds_after_large_sgd_steps(tiny):
    opt = torch.optim.SGD(tiny.parameters(), lr=10.0)
    (c,) = build_constraints(RegularizerConfig(max_norm=MaxNormConfig(radius=1.5)))
    for _ in range(3):
        opt.zero_grad()
        tiny(torch.randn(8, 3)).pow(2).sum().backward()
        opt.step()
        c.apply(tiny)
        assert float(tiny.hidden_layers[0].weight.norm(dim=1).max()) <= 1.5 * (1 + 1e-5)


def test_no_constraint_without_radius():
    assert build_constraints(RegularizerConfig()) == []


@pytest.mark.parametrize("retain", [0.8, 0.5])
def test_dropout_keeps_expected_activation_in_training_and_is_off_in_eval(retain):
    torch.manual_seed(0)
    net = MLP(2000, 2, ModelConfig(name="t", hidden=[4]), DropoutConfig(input_retain=retain))
    x = torch.ones(50, 2000)
    net.train()
    dropped = net.input_dropout(x)
    kept = (dropped != 0).float().mean()
    assert float(kept) == pytest.approx(retain, abs=0.01)
    assert float(dropped.mean()) == pytest.approx(1.0, abs=0.02)  # inverted dropout: E[x̃] = x
    assert torch.equal(dropped[dropped != 0], torch.full_like(dropped[dropped != 0], 1 / retain))
    net.eval()
    assert torch.equal(net.input_dropout(x), x)
    assert torch.equal(net(x), net(x))  # deterministic in eval


def test_hidden_dropout_applies_to_hidden_units_only():
    net = MLP(4, 3, ModelConfig(name="t", hidden=[5, 6]), DropoutConfig(hidden_retain=0.5))
    assert isinstance(net.input_dropout, torch.nn.Identity)
    assert net.hidden_dropout.p == pytest.approx(0.5)
