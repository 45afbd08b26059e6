"""Attacks: the registry (config name -> ART class and parameters), annt's compiled ART estimator, the runner, and
the worst-case ensemble. ``registry`` imports neither TensorFlow nor ART."""
