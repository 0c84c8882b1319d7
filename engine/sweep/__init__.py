"""``rnnlab-tui sweep``: many ordinary runs of one preset, over a grid of train options, on local worker
processes or as Ray tasks, with a live table and JSON/CSV results.

Every point of the grid (and seed) is one run of the preset with its own log under ``runs/`` (so
``rnnlab-tui watch runs/<log>`` opens it). Two studies are built in: ``memory`` (NNDL 6.3, the
default: SRN and LSTM x lengths 10-35, an accuracy-vs-length chart and the LSTM-vs-SRN verdict) and
``stability`` (the explosion chapter's settings, learning rate x clipping threshold: whether each run
exploded, when, and its test accuracy, as a map and charts). At the end ``runs/sweep-<id>.json`` and
``.csv`` hold every run (written also when a run fails or Ctrl-C stops the sweep, with what finished).

The modules: ``grid`` (what is trained), ``job`` (one run, wherever it trains), ``local`` and
``on_ray`` (the backends), ``state`` (the runs' state and conclusions), ``results`` (the files),
``table`` (what is shown), ``run`` (the sweep from Python), ``command`` (the command line).
"""
