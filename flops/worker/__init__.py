"""The model worker: the user's ModelManager in the environment the repo asks for.

FLOps' Flower runtime (flwr, mlflow-skinny, its NumPy and pyarrow) and the user's
code (whatever versions the repo pins, NumPy 1.x and TensorFlow 2.12 included)
cannot share one resolver. So they do not share one environment: the Flower side
runs in FLOps' runtime environment and talks to a worker process started from the
user's environment, over a Unix socket, with NumPy arrays in `.npy` form
(`protocol`). The worker imports the user's code once and forks a child per
task (`server`), so each task gets a fresh ModelManager, warm.

Everything under this package runs in the user's environment: it imports only the
standard library, NumPy and (for data and model export) what that environment has.
"""
