from trainers.methods.base import METHODS, Method, register_method
from trainers.methods import finetune as _finetune, prompt_tuning as _prompt_tuning  # noqa: F401

__all__ = ["METHODS", "Method", "register_method"]
