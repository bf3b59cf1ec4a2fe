from trainers.tasks.base import TASKS, DataError, Example, JsonlLayout, Task, TsvLayout, register_task
from trainers.tasks import glue as _glue  # noqa: F401  (registers the GLUE tasks)
from trainers.tasks import superglue as _superglue  # noqa: F401  (registers the SuperGLUE tasks)

__all__ = ["TASKS", "DataError", "Example", "JsonlLayout", "Task", "TsvLayout", "register_task"]
