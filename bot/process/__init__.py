"""Process management shared by `run`, `bot` and `worker`: children, the run lock, private Redis, logs."""
