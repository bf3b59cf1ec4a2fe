"""The search spec: YAML validated once, at the edge, into pydantic models.

Every bad input becomes one line naming the field, the rule and the value (SpecError), before
Ray starts and before anything is written to the tracking database.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from search.uris import check_tracking_uri
from trainers.config import DataConfig, OptimConfig, TrainingConfig
from trainers.methods import METHODS
from trainers.registry import unknown_name_message
from trainers.tasks import TASKS, DataError

BUNDLED = Path(__file__).parent / "specs"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_OPTIM_KEYS = tuple(OptimConfig.__dataclass_fields__)


class SpecError(ValueError):
    """A spec that cannot run. str() is the one line shown to the user."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SchedulerConfig(_Strict):
    """A Ray Tune trial scheduler that prunes weak trials, on top of patience early stopping.
    Time is counted in evaluations (Tune's training_iteration)."""

    name: Literal["none", "asha", "median"] = "none"
    grace_period: int = Field(default=1, ge=1)  # evaluations before a trial can be pruned
    reduction_factor: float = Field(default=3.0, gt=1)  # asha only
    min_samples_required: int = Field(default=3, ge=1)  # median only


class SearchConfig(_Strict):
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    # random/optuna: assignments sampled per method x task; each runs once per seed
    num_samples: Optional[int] = Field(default=None, ge=1)
    max_concurrent: Optional[int] = Field(default=None, ge=1)
    max_failures: int = Field(default=0, ge=0)  # retries of a failing trial
    sampler_seed: int = 0
    scheduler: SchedulerConfig = SchedulerConfig()

    @model_validator(mode="after")
    def _samples(self) -> "SearchConfig":
        if self.algorithm != "grid" and self.num_samples is None:
            raise ValueError(f"num_samples: is required for algorithm {self.algorithm!r} (got nothing)")
        if self.algorithm == "grid" and self.num_samples is not None:
            raise ValueError(f"num_samples: only random and optuna sample; grid runs every point (got {self.num_samples})")
        return self


class Range(_Strict):
    """A hyperparameter range for random and optuna search: uniform, or log-uniform with log: true.
    Integer endpoints sample integers."""

    low: Union[int, float]
    high: Union[int, float]
    log: bool = False

    @model_validator(mode="after")
    def _order(self) -> "Range":
        if not self.low < self.high:
            raise ValueError(f"low must be < high (got low={self.low}, high={self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got low={self.low})")
        return self

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


class Resources(_Strict):
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)


class Tracking(_Strict):
    uri: str = "sqlite:///mlflow.db"

    @field_validator("uri")
    @classmethod
    def _usable(cls, v: str) -> str:
        return check_tracking_uri(v)


class Spec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    backbone: str
    data: DataConfig = DataConfig()
    tasks: list[str] = Field(min_length=1)
    # method -> hyperparameter -> a list of values (grid points, or choices) or, for random and
    # optuna, a range {low, high, log}
    methods: dict[str, dict[str, Union[list[Any], Range]]] = Field(min_length=1)
    seeds: list[int] = Field(default=[0], min_length=1)
    # How tasks are posed on the backbone (trainers/families.py): auto (encoders and decoders: a
    # classification head; T5: text-to-text), head, or lm (label words scored by the LM).
    task_format: Literal["auto", "head", "lm"] = "auto"
    training: TrainingConfig = TrainingConfig()
    search: SearchConfig = SearchConfig()
    resources: Resources = Resources()
    tracking: Tracking = Tracking()

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, v: str) -> str:
        path = Path(v).expanduser()
        if path.is_dir():
            return str(path.resolve())
        if v.startswith(("/", ".", "~")) or not _HUB_ID.match(v):
            raise ValueError(f"must be an existing model directory or a Hugging Face id like org/name (got {v!r})")
        return v

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        for i, name in enumerate(v):
            if name not in TASKS:
                raise ValueError(f"[{i}]: {unknown_name_message('task', name, TASKS.names())}")
        _unique(v, "tasks")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        _unique(v, "seeds")
        return v

    @field_validator("methods", mode="before")
    @classmethod
    def _grids(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for method, grid in v.items():
            if method not in METHODS:
                raise ValueError(f"{unknown_name_message('method', method, METHODS.names())}")
            grid = {} if grid is None else grid
            if grid == "paper":  # the method's paper search space (METHODS.md), by name
                grid = dict(METHODS[method].search_space)
            if not isinstance(grid, dict):
                raise ValueError(f"{method}: must map hyperparameter names to lists of values (got {grid!r})")
            out[method] = {k: _range(f"{method}.{k}", vals) if isinstance(vals, dict)
                           else vals if isinstance(vals, list) else [vals] for k, vals in grid.items()}
        return out

    @model_validator(mode="after")
    def _check(self) -> "Spec":
        for method in self.methods:
            try:
                if self.search.algorithm == "grid":
                    self.assignments(method)  # every grid point must build valid configs
                else:
                    check_sampled_space(self, method)
            except ValueError as e:
                raise ValueError(f"methods.{e}") from e
        _check_applicability(self)
        if self.data.source == "local":
            _check_data_dir(self.data.dir, self.tasks)
        return self

    def assignments(self, method: str) -> list[tuple[OptimConfig, dict[str, Any]]]:
        """The grid of one method, expanded and validated: (optimizer config, method params)."""
        grid = self.check_keys(method)
        for key, values in grid.items():
            if isinstance(values, Range):
                raise ValueError(f"{method}.{key}: a range needs search.algorithm random or optuna; "
                                 f"grid takes a list (got {values.model_dump()})")
        keys = sorted(grid)
        return [self.build_point(method, dict(zip(keys, combo))) for combo in itertools.product(*(grid[k] for k in keys))]

    def check_keys(self, method: str) -> dict[str, Any]:
        grid = self.methods[method]
        try:
            valid = _OPTIM_KEYS + METHODS[method].hyperparameter_names(grid)
        except ValueError as e:
            raise ValueError(f"{method}.{e}") from None
        for key, values in grid.items():
            if key not in valid:
                raise ValueError(f"{method}: {unknown_name_message('hyperparameter', key, list(valid))}")
            if isinstance(values, list) and not values:
                raise ValueError(f"{method}.{key}: the grid is empty (got [])")
        if "lr" not in grid:
            raise ValueError(f"{method}.lr: is required, as a value or a list (got nothing)")
        return grid

    def build_point(self, method: str, point: dict[str, Any]) -> tuple[OptimConfig, dict[str, Any]]:
        """One assignment (hyperparameter -> value) → (optimizer config, method params), validated."""
        cls = METHODS[method].Config
        optim = _build(OptimConfig, {k: v for k, v in point.items() if k in _OPTIM_KEYS}, method, point)
        rest = {k: v for k, v in point.items() if k not in _OPTIM_KEYS}
        if METHODS[method].validate_params is not None:  # keys that are not a fixed dataclass (peft)
            try:
                return optim, METHODS[method].validate_params(rest)
            except ValueError as e:
                raise ValueError(f"{method}.{e}") from None
        params = _build(cls, rest, method, point)
        return optim, {k: getattr(params, k) for k in getattr(cls, "__dataclass_fields__", {})}


def _range(field: str, raw: dict) -> Range:
    try:
        return Range.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = unknown_name_message("key", where, ["low", "high", "log"])
        elif err["type"] != "value_error":
            msg = f"{where}: {msg} (got {err.get('input')!r})"
        raise ValueError(f"{field}: a range is {{low, high, log}}; {msg}") from None


def check_sampled_space(spec: "Spec", method: str) -> None:
    """Every choice and both ends of every range must build valid configs (others at their first)."""
    grid = spec.check_keys(method)
    first = {k: (v.low if isinstance(v, Range) else v[0]) for k, v in grid.items()}
    for key, values in grid.items():
        for value in ([values.low, values.high] if isinstance(values, Range) else values):
            spec.build_point(method, first | {key: value})


def _build(cls: type, values: dict[str, Any], method: str, point: dict[str, Any]):
    try:
        return TypeAdapter(cls).validate_python(values)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if loc:
            raise ValueError(f"{method}.{loc}: {msg} (got {err.get('input')!r})") from e
        raise ValueError(f"{method}.{msg}") from e


def _check_applicability(spec: "Spec") -> None:
    """Method × backbone rules, when the backbone is local (a directory or a packaged model),
    from its config.json (trainers/families.py) without loading weights: the family is known and
    the task format applies to it; each method's ``check_backbone`` holds on every assignment
    (BitFit needs biases, PASTA special tokens, prefix tuning an encoder); max_length plus the
    method's prompt fits the backbone's positions; DePT's rows of A fit max_length."""
    from trainers.backbone import resolve_backbone
    from trainers.families import arch_for, read_config, resolve_route

    try:
        config = read_config(resolve_backbone(spec.backbone))
        if config is None:
            return  # a hub id: checked when the trial loads it
        arch = arch_for(config)
    except ValueError as e:
        raise ValueError(str(e)) from None
    try:
        resolve_route(arch, spec.task_format)
    except ValueError as e:
        raise ValueError(str(e)) from None
    tokenizer = None
    for method in spec.methods:
        cls = METHODS[method]
        for optim, params in _points(spec, method):
            try:
                m = cls.from_params(params, training=spec.training)
                _check_positions(arch.positions(config), spec.training.max_length + m.extra_positions())
                if cls.has_backbone_check():
                    if tokenizer is None and method == "pasta":
                        from transformers import AutoTokenizer
                        tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(spec.backbone))
                    cls.check_backbone(m.config, model_config=config, tokenizer=tokenizer)
            except ValueError as e:
                raise ValueError(f"methods.{method}: not applicable to backbone {spec.backbone!r} "
                                 f"({arch.family}, {config.get('model_type')}): {e}") from e


def _points(spec: "Spec", method: str):
    """Every grid point, or for random/optuna every choice and both ends of every range."""
    if spec.search.algorithm == "grid":
        return spec.assignments(method)
    grid = spec.check_keys(method)
    first = {k: (v.low if isinstance(v, Range) else v[0]) for k, v in grid.items()}
    return [spec.build_point(method, first | {k: x}) for k, v in grid.items()
            for x in ([v.low, v.high] if isinstance(v, Range) else v)]


def _check_positions(limit, needed: int) -> None:
    if limit is not None and needed > limit:
        raise ValueError(f"training.max_length: plus the method's prompt must fit the backbone's {limit} "
                         f"positions (got {needed})")


def _unique(values: list, field: str) -> None:
    dupes = sorted({x for x in values if values.count(x) > 1}, key=str)
    if dupes:
        raise ValueError(f"must not repeat values (got {dupes[0]!r} twice)")


def _check_data_dir(directory: str | None, tasks: list[str]) -> None:
    path = Path(directory or "")
    if not path.is_dir():
        raise ValueError(f"data.dir: directory does not exist (got {directory!r})")
    for task in tasks:
        for split in ("train", "dev", *TASKS[task].extra_eval_splits):
            try:
                TASKS[task].local_file(path, split)
            except DataError as e:
                raise ValueError(f"data.dir: {e}") from None


# ---- loading -------------------------------------------------------------------------------
def resolve_spec_path(ref: str) -> Path:
    """A path, or the name of a spec bundled with peftsearch (search/specs/NAME.yaml)."""
    path = Path(ref)
    if path.is_file():
        return path
    bundled = BUNDLED / f"{ref.removesuffix('.yaml')}.yaml"
    if bundled.is_file():
        return bundled
    names = sorted(p.stem for p in BUNDLED.glob("*.yaml"))
    raise SpecError(f"spec: no such file, and no bundled spec of that name (got {ref!r}; bundled: {', '.join(names)})")


def load_spec(ref: str | Path, *, overrides: dict[str, Any] | None = None) -> Spec:
    path = resolve_spec_path(str(ref))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from e
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: must be a YAML mapping of spec keys (got {type(raw).__name__})")
    for dotted, value in (overrides or {}).items():
        _set(raw, dotted, value)
    return parse_spec(raw, source=str(path))


def parse_spec(raw: dict[str, Any], *, source: str = "spec") -> Spec:
    # Relative paths in a spec are relative to where the user runs peftsearch (its cwd).
    try:
        return Spec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(f"{source}: {format_error(e)}") from e


def format_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = [str(p) for p in err["loc"]]
    msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{'.'.join(loc)}: {unknown_name_message('key', loc[-1], _valid_keys(loc[:-1]))}"
    m = re.match(r"^([\w.\[\]]+): (.*)$", msg, re.S)
    if m and err["type"] == "value_error":
        head = m.group(1)
        sep = "" if head.startswith("[") or not loc else "."
        return f"{'.'.join(loc)}{sep}{head}: {m.group(2)}"
    got = "" if err["type"] == "value_error" or "input" not in err else f" (got {err['input']!r})"
    return f"{'.'.join(loc) or 'spec'}: {msg}{got}"


def _valid_keys(parent: list[str]) -> list[str]:
    fields: Any = Spec.model_fields
    for name in parent:
        kind = fields[name].annotation if name in fields else None
        fields = getattr(kind, "model_fields", None) or getattr(kind, "__dataclass_fields__", {})
    return list(fields)


def _set(raw: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise SpecError(f"{dotted}: cannot override inside a non-mapping value")
    node[last] = value
