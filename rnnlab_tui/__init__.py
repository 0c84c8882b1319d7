"""rnnlab-tui: a terminal lab for watching recurrent networks learn, fail and recover."""

__version__ = "0.1.0"
