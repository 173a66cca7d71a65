"""The `kdscope` command: parse, call the Python API, print. `main` is in `kdscope.cli.main`."""
