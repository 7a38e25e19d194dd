"""`python -m fraudstream.bench raw-passthrough|faust-passthrough ...` (the apps under test)."""

from fraudstream.bench.passthrough import main

main()
