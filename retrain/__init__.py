"""The retrain service: drift-event intake, dataset building, challenger training, quality
gate. Built by the learning-loop issue on top of `models.training` and `models.registry`."""
