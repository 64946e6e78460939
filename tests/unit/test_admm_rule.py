"""DHO2's ADMM-like rule against a plain re-implementation of its closed form."""

import torch

from mpihybrid.admm.rule import ADMMRule


def test_admm_rule_closed_form():
    theta = torch.zeros(4)
    rule = ADMMRule(theta, sigma=0.5, round_steps=2)
    for step in range(1, 7):
        theta -= 0.1 * rule.gradient(torch.ones(4))
        rule.after_step(step, theta)
    # π_r = σ Σ Δ_j and the z-update moves θ by Σ Δ_j: check against a plain re-implementation
    th, pi, z, total = torch.zeros(4), torch.zeros(4), torch.zeros(4), torch.zeros(4)
    for step in range(1, 7):
        th -= 0.1 * (torch.ones(4) + pi)
        if step % 2 == 0:
            total += th - z
            pi = 0.5 * total
            th = th + total
            z = th.clone()
    assert torch.allclose(theta, th) and torch.allclose(rule.dual, pi)
    off = ADMMRule(torch.zeros(4), 0.5, 2, enabled=False)
    assert not off.after_step(2, torch.zeros(4)) and off.state_bytes() == 0
