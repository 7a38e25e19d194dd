"""The retrain service's pure core and its wiring.

`dataset` turns the scored feature log (fraud-scores) and the labels into a training set known
at a moment `as_of`; `challenger` trains a challenger on it with `models.training` and scores it
beside the champion on a recent holdout; `gate` decides whether it may replace the champion.
None of them does I/O: the service wires them to topics, files, the registry and a clock.
"""
