"""Judging a model set and its policy by money, off the live path.

Pure analysis over candles, model outputs and fills: the fast simulator's inputs (`arrays`),
the policy's result against its baselines (`policy_result`), the AUCs (`auc`), the trade list
(`trades`) and the HTML reports (`backtest_report`, `walkforward_report`). It imports ml,
exchange's watchdog kernels and policy; the composition (settings, the engine, files) stays in
app/ (`app/backtest.py`, `app/training.py`, `app/walkforward.py`).
"""
