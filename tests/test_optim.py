import math

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_der

from fastdp import kernels, optim
from fastdp.comm import SerialComm


def test_schedules():
    assert optim.Schedule("constant", 0.5)(100) == 0.5
    inv = optim.Schedule("invscaling", 1.0, power_t=0.5)
    assert inv(0) == 1.0 and inv(3) == pytest.approx(0.5)
    cos = optim.Schedule("cosine", 1.0, total_steps=10, lr_min=0.1)
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.55) and cos(10) == pytest.approx(0.1)
    assert cos(50) == pytest.approx(0.1)


@pytest.mark.parametrize("schedule", [
    optim.Schedule("constant", 0.3), optim.Schedule("invscaling", 0.7, power_t=0.37),
    optim.Schedule("cosine", 0.9, total_steps=40, lr_min=0.05)])
def test_rates_are_each_steps_rate_exactly(schedule):
    assert schedule.rates(3, 3).shape == (0,)
    assert schedule.rates(5, 60).tolist() == [schedule(t) for t in range(5, 60)]


@pytest.mark.parametrize("args,kwargs,message", [
    (("linear", 0.1), {}, "schedule must be one of"),
    (("constant", 0.0), {}, "learning_rate must be a finite number > 0"),
    (("constant", math.inf), {}, "learning_rate must be a finite number > 0"),
    (("invscaling", 0.1), {"power_t": -1}, "power_t must be"),
    (("cosine", 0.1), {"total_steps": 0}, "total_steps must be >= 1"),
    (("cosine", 0.1), {"lr_min": 0.2}, "lr_min must be in"),
])
def test_bad_schedules(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        optim.Schedule(*args, **kwargs)


def test_penalty_value_gradient_and_prox_leave_the_intercept_alone():
    p = optim.Penalty(alpha=2.0, l1_ratio=0.25, n_coef=2)
    theta = np.array([1.0, -3.0, 5.0])
    assert p.value(theta) == pytest.approx(0.5 * 1.5 * 10 + 0.5 * 4)
    grad = np.empty(3)  # the L2 part's gradient, as the training loop adds it to zero sums
    kernels.mean_gradient(np.zeros(4), 1.0, theta, grad, l2=p.l2, n_coef=p.n_coef)
    np.testing.assert_allclose(grad, [1.5, -4.5, 0.0])
    p.prox(theta, lr=2.0)  # threshold 2 * 0.5 = 1
    np.testing.assert_allclose(theta, [0.0, -2.0, 5.0])


@pytest.mark.parametrize("kwargs,message", [
    ({"alpha": -1, "l1_ratio": 0}, "alpha must be"),
    ({"alpha": 1, "l1_ratio": 1.5}, "l1_ratio must be in"),
])
def test_bad_penalty(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optim.Penalty(n_coef=1, **kwargs)


def test_sgd_momentum_and_nesterov_by_hand():
    theta, grad = np.array([1.0]), np.array([2.0])
    heavy = optim.make_rule("sgd", 1, momentum=0.5)
    heavy.step(theta, grad, 0.1)   # v = 2
    heavy.step(theta, grad, 0.1)   # v = 3
    assert theta[0] == pytest.approx(1 - 0.2 - 0.3)
    theta = np.array([1.0])
    nesterov = optim.make_rule("sgd", 1, momentum=0.5, nesterov=True)
    nesterov.step(theta, grad, 0.1)  # v = 2, step grad + 0.5 v = 3
    assert theta[0] == pytest.approx(0.7)


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_sgd_state_holds_the_velocity_with_or_without_momentum(momentum):
    """The checkpointed state is a velocity of n_params values either way (zeros without
    momentum, which keeps none of its own), and set_state checks its shape."""
    rule = optim.make_rule("sgd", 3, momentum=momentum)
    theta = np.ones(3)
    rule.step(theta, np.array([1.0, 2.0, 3.0]), 0.1)
    np.testing.assert_array_equal(rule.state()["velocity"], [1.0, 2.0, 3.0] if momentum else 0.0)
    saved = {"velocity": np.array([4.0, 5.0, 6.0])}
    rule.set_state(saved)
    np.testing.assert_array_equal(rule.state()["velocity"], saved["velocity"] if momentum else 0.0)
    with pytest.raises(ValueError, match=r"SGD state 'velocity' must be float64 of shape \(3,\)"):
        rule.set_state({"velocity": np.zeros(2)})


def test_adam_first_step_is_lr_times_sign_and_adamw_decays_coef_only():
    theta = np.array([1.0, -1.0, 1.0])
    adam = optim.make_rule("adam", 3)
    adam.step(theta, np.array([3.0, -0.01, 0.0]), 0.1)
    np.testing.assert_allclose(theta, [0.9, -0.9, 1.0], atol=1e-6)
    theta = np.array([1.0, 1.0])
    adamw = optim.make_rule("adamw", 2, weight_decay=0.5, n_coef=1)
    adamw.step(theta, np.zeros(2), 0.1)
    np.testing.assert_allclose(theta, [0.95, 1.0])


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_rules_minimize_a_quadratic(name):
    A = np.diag([1.0, 10.0])
    theta = np.array([3.0, -2.0])
    rule = optim.make_rule(name, 2, momentum=0.9, weight_decay=0.0)
    for _ in range(3000):
        rule.step(theta, A @ theta, 0.01)
    np.testing.assert_allclose(theta, 0.0, atol=1e-3)


@pytest.mark.parametrize("kwargs,message", [
    ({"momentum": 1.0}, "momentum must be in"),
    ({"momentum": 0.0, "nesterov": True}, "nesterov=True needs momentum > 0"),
])
def test_bad_sgd(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optim.make_rule("sgd", 1, **kwargs)


def test_unknown_rule():
    with pytest.raises(ValueError, match="update rule must be one of"):
        optim.make_rule("rmsprop", 1)


def test_lbfgs_serial_finds_rosenbrock_minimum():
    theta = np.array([-1.2, 1.0, 0.5])
    calls = []

    def evaluate(x):
        calls.append(x.copy())
        return rosen(x), rosen_der(x)

    n_iter, converged = optim.lbfgs(evaluate, theta, SerialComm(), max_iter=500, tol=1e-10)
    assert converged and 0 < n_iter < 500
    np.testing.assert_allclose(theta, 1.0, atol=1e-6)
    assert len(calls) >= n_iter


def test_lbfgs_gets_an_ill_conditioned_problem_to_a_tiny_gradient():
    """scipy's line search stops when f stops changing in floating point; the Newton polish goes on
    by the gradient alone."""
    scales = np.logspace(-4, 1, 40)
    offset = np.linspace(-1.0, 1.0, 40)

    def evaluate(x):
        r = x - offset
        return 0.5 * float(scales @ (r * r)) + 1.0, scales * r

    theta = np.zeros(40)
    optim.lbfgs(evaluate, theta, SerialComm(), max_iter=100_000, tol=1e-13)
    assert np.linalg.norm(evaluate(theta)[1]) < 1e-9  # scipy alone stops at |grad| ~ 2e-8
    np.testing.assert_allclose(theta, offset, atol=1e-5)
