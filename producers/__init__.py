"""Producers: sources of events (synthetic labelled card traffic) for training, demos and tests."""
