"""The in-place zeroth-order kernels against the flat, explicit-direction ones they replace."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from mpihybrid.models import FlatModel
from mpihybrid.seeding import torch_generator
from mpihybrid.solvers import zeroth_order as zo
from mpihybrid.solvers.zeroth_order import Directions, SGDRule, add_direction_, estimate_, finite_differences


@pytest.fixture
def small_chunks(monkeypatch):
    """Pieces of 16 elements, so every small tensor here is cut, and pieces end at tensor ends."""
    monkeypatch.setattr(zo, "CHUNK", 16)


def test_a_direction_is_its_generator_walked_over_the_tensors_in_pieces(small_chunks):
    dirs = Directions(7, ("decomfl", 3, 0), count=2, sizes=(3, 37, 7))
    gen = torch_generator(7, "decomfl", 3, 0, 1)
    expected = torch.cat([torch.randn(n, generator=gen) for n in (3, 16, 16, 5, 7)])
    assert torch.equal(dirs.vectors()[1], expected)
    params = [torch.zeros(3), torch.zeros(37), torch.zeros(7)]
    add_direction_(params, dirs, 1, 1.0)
    assert torch.equal(torch.cat(params), expected)
    # Derived per (seed, path, p): another p or another path is another direction.
    assert not torch.equal(dirs.vectors()[0], expected)
    assert not torch.equal(Directions(7, ("decomfl", 3, 1), 2, (3, 37, 7)).vectors()[1], expected)
    with pytest.raises(ValueError, match="other tensors"):
        add_direction_([torch.zeros(47)], dirs, 0, 1.0)


def test_sphere_directions_have_radius_sqrt_d(small_chunks):
    dirs = Directions(1, ("x",), count=3, sizes=(50, 30), kind="sphere")
    for v in dirs.vectors():
        assert float(v.norm()) == pytest.approx(80**0.5, rel=1e-6)


def _problem(dtype: torch.dtype) -> tuple[nn.Module, FlatModel, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    return model, FlatModel(model), torch.randn(20, 6, dtype=dtype), torch.randint(0, 3, (20,))


@pytest.mark.parametrize("estimator", ["forward", "central"])
@pytest.mark.parametrize("kind", ["gaussian", "sphere"])
def test_inplace_estimate_equals_the_explicit_estimator(small_chunks, estimator, kind):
    # float64 parameters, so the only difference left is the order of roundings.
    model, flat, xb, yb = _problem(torch.float64)
    params = list(model.parameters())
    x0 = flat.initial()
    dirs = Directions.over(params, 5, ("decomfl", 0, 0), count=4, kind=kind)
    explicit = dirs.vectors(torch.float64)
    want, want_f0 = finite_differences(lambda v: float(flat.loss(v, xb, yb)), x0, explicit, 1e-3, estimator)

    got, f0 = estimate_(params, lambda: float(nn.functional.cross_entropy(model(xb), yb)), dirs, 1e-3, estimator)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-9), (got, want)
    # central returns the mean of (f(x+μz) + f(x−μz))/2, which is f(x) + O(μ²).
    assert f0 == pytest.approx(want_f0, rel=1e-12 if estimator == "forward" else 1e-5)
    # Restored by subtraction: within rounding of x0, not necessarily bit for bit.
    assert torch.allclose(flat.initial(), x0, rtol=0, atol=1e-15)


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.0, 1e-2), (0.9, 1e-2)])
@pytest.mark.parametrize("kind", ["gaussian", "sphere"])
def test_inplace_update_equals_the_flat_sgd_step(small_chunks, momentum, weight_decay, kind):
    model, flat, _, _ = _problem(torch.float64)
    params = list(model.parameters())
    bufs = [torch.zeros_like(t) for t in params] if momentum else []
    x, buf = flat.initial(), torch.zeros(flat.d, dtype=torch.float64)
    rule = SGDRule(momentum, weight_decay)
    for step in range(3):
        dirs = Directions.over(params, 2, ("decomfl", 0, step), count=3, kind=kind)
        scalars = torch.randn(3)
        rule.step(x, buf, scalars, dirs.vectors(torch.float64), lr=0.1)
        rule.update_(params, bufs, dirs, scalars, lr=0.1)
    assert torch.allclose(flat.initial(), x, rtol=1e-12, atol=1e-14)
    if momentum:
        assert torch.allclose(torch.cat([b.view(-1) for b in bufs]), buf, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(x, FlatModel(_problem(torch.float64)[0]).initial())


def test_replaying_updates_gives_the_same_bits(small_chunks):
    """What rebuilt clients rely on: the update reads only (params, bufs, seed path, scalars)."""
    model, flat, _, _ = _problem(torch.float32)
    a = [t.detach().clone() for t in model.parameters()]
    b = [t.detach().clone() for t in model.parameters()]
    rule = SGDRule(momentum=0.9, weight_decay=1e-3)
    abuf, bbuf = [torch.zeros_like(t) for t in a], [torch.zeros_like(t) for t in b]
    history = [torch.randn(5) for _ in range(4)]
    for r, g in enumerate(history):
        rule.update_(a, abuf, Directions.over(a, 3, ("decomfl", r, 0), 5), g, 0.01)
    for r, g in enumerate(history):  # fresh Directions objects, as a replay builds them
        rule.update_(b, bbuf, Directions.over(b, 3, ("decomfl", r, 0), 5), g.clone(), 0.01)
    assert all(torch.equal(s, t) for s, t in zip(a + abuf, b + bbuf))
    assert not torch.equal(a[0], next(model.parameters()))


def test_bfloat16_parameters_take_float32_directions():
    t = [torch.zeros(10, dtype=torch.bfloat16)]
    dirs = Directions.over(t, 0, ("x",), 1)
    add_direction_(t, dirs, 0, 1.0)
    assert t[0].dtype == torch.bfloat16
    assert torch.equal(t[0], dirs.vectors()[0].to(torch.bfloat16))


# Peak RSS of one ZO step (P estimates + the update) on a ~20 M-parameter model, in a fresh
# process, over the peak after a warm-up evaluation. P = 0 is the control: one d-sized float32
# buffer in place of the step, to show that the measurement sees one.
_MEMORY_PROBE = r"""
import json, sys
import torch
from torch import nn
from mpihybrid.solvers.zeroth_order import Directions, SGDRule, estimate_

torch.set_num_threads(1)
P = int(sys.argv[1])
torch.manual_seed(0)
model = nn.Sequential(*[nn.Linear(2236, 2236) for _ in range(4)])
params = list(model.parameters())
d = sum(p.numel() for p in params)
xb, yb = torch.randn(8, 2236), torch.randint(0, 2236, (8,))

def loss():
    return float(nn.functional.cross_entropy(model(xb), yb))

def peak():  # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's (fork keeps it)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

with torch.no_grad():
    loss()
base = peak()
if P:
    dirs = Directions.over(params, 0, ("probe",), P)
    scalars, _ = estimate_(params, loss, dirs, 1e-3, "forward")
    SGDRule().update_(params, [], dirs, scalars, 1e-3)
else:
    buffer = torch.ones(d)
print(json.dumps({"d": d, "growth": peak() - base}))
"""


def _growth(p: int) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(p)], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    return r["growth"], 4 * r["d"]


def test_peak_memory_of_a_step_does_not_grow_with_p():
    control, model_bytes = _growth(0)
    assert model_bytes > 76_000_000
    assert control > 0.9 * model_bytes  # the probe does see one d-sized float32 buffer
    one, twenty = _growth(1)[0], _growth(20)[0]
    # A step allocates none (measured: 8-16 MiB of allocator slack), and 20 directions cost no more than one.
    assert one < 0.5 * model_bytes and twenty < 0.5 * model_bytes, (one, twenty, model_bytes)
    assert abs(twenty - one) < 0.25 * model_bytes, (one, twenty, model_bytes)
