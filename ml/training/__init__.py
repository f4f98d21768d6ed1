"""Training: one module per model set, per stage of the full set, and per shared piece.

- ``quick_pair``: the quick set, a LightGBM buy/sell pair (``train_quick``; ``lxa train --quick``).
- ``full_set``: the full set (``train_full``; ``lxa train``), which runs these stages in order:
  ``windows`` (base, stack and calibration windows) -> ``base_lightgbm`` (the LightGBM pair) ->
  ``base_hybrid`` (the LSTM+CNN hybrid) -> ``stacking`` (out-of-sample base predictions, the
  stackers, per-coin calibration) -> ``autoencoder`` (the anomaly model) -> ``auc_walkforward``
  (the AUC walk-forward table), then saves the set.
- ``candles``: the one check of the candles a set trains on; ``boosting``: the LightGBM
  parameters and early-stopped fit; ``scoring``: AUC and decision thresholds.
- ``torch_loops``: the PyTorch training loops of the hybrid and the autoencoder.
- ``tune``: the optional Optuna search over the LightGBM parameters (``lxa train --tune``).

Not to be confused with ``app.walkforward``, the policy's walk-forward over retrained sets.
"""
