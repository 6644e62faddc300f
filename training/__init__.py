"""Training side: I-24 data I/O, the scenario simulator, pair mining, the five models and their CLIs."""
