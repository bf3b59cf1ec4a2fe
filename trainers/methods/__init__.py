from trainers.methods.base import METHODS, Method, register_method
from trainers.methods import (  # noqa: F401  (importing registers each method)
    adapter, aot, bitfit, dept, finetune, lora, pasta, peft_any, prefix_tuning, prompt_tuning, reparam_prompts)

__all__ = ["METHODS", "Method", "register_method"]
