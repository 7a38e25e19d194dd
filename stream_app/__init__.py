"""The Faust stream application (the only package that imports Faust). Built by the streaming
issue: agents stay thin wrappers around the pure functions in `models`."""
