"""Package data of the core: the algorithm catalogue and OpenSSH's default-list history (TOML).

A package so that `importlib.resources` finds the files in a wheel, a zip or a checkout alike.
"""
