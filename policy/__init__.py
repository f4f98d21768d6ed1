"""The trading policy: turns expected returns and the account into at most one proposal.

Pure code, no I/O: the graph's `ml_signal` node, `lxa backtest` (through the engine) and the
fast simulator (`policy.simulate`) all call the same compiled rules in `policy.rules`.
"""
