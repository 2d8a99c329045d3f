"""The jobs built on the lesson: training, evaluation, ablations, benchmark, datasets, CLI."""
