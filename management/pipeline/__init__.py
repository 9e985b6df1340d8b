"""The pipeline: clone, check, augment, build, schedule, train, register."""
