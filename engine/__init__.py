"""rnnlab-tui's engine: the PyTorch side. Importing the package loads nothing heavy; torch is
imported by the modules that need it (cells, models, runner, ...)."""
