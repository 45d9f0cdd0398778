"""methods/base.py: the budget clock every method stops by."""

from methods.base import Budget, BudgetClock


def test_budget_clock_names_what_stopped_it(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("methods.base.time.perf_counter", lambda: now[0])
    clock = BudgetClock(Budget(seconds=10.0, samples=100))
    clock.spend(100)
    assert not clock.exhausted()  # the budget is the last evaluation allowed, not one short of it
    clock.spend(1)
    assert clock.exhausted() and clock.stop_status() == "budget_exceeded"
    slow = BudgetClock(Budget(seconds=10.0, samples=100))
    now[0] = 10.5
    assert slow.exhausted() and slow.stop_status() == "time_limit"
    slow.spend(101)  # both ran out: the deterministic reason wins, as a quiet machine would also have hit it
    assert slow.stop_status() == "budget_exceeded"
