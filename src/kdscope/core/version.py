"""kdscope's version, recorded in checkpoints, results and reports; importing it loads nothing else."""

__version__ = "0.1.0"
