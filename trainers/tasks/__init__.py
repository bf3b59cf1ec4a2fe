from trainers.tasks.base import TASKS, DataError, Example, Task, TsvLayout, register_task
from trainers.tasks import glue as _glue  # noqa: F401  (registers the GLUE tasks)

__all__ = ["TASKS", "DataError", "Example", "Task", "TsvLayout", "register_task"]
