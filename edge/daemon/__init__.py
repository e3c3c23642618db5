"""The daemon: the capture-to-prediction pipeline, smoothing, stats, systemd notify, and the
`run` / `demo` / `config` commands that wire it from a config."""
