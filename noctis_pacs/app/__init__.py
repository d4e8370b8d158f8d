"""The composition root: serve, process topology, the CLI, the events worker, runtime tuning."""
