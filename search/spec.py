"""The search spec: YAML validated once, at the edge, into pydantic models.

Every bad input becomes one line, ``FIELD: rule, got VALUE`` (SpecError), before Ray starts and
before anything is written to the tracking database or the output directory. The one pass,
``load_spec`` → ``parse_spec``, is shared by ``validate``, ``run``, ``resume`` and ``submit``:

1. the file (search/loader.py): UTF-8, no NUL bytes, no duplicate keys, an alias budget, a depth
   cap, no dates, bytes or sets;
2. plain data (``check_plain``: text keys, JSON-like values, the same depth cap, for a spec given
   as a dict), ``${ENV}`` interpolation, and ``MLFLOW_TRACKING_URI`` when the spec names no URI;
3. the pydantic models below: types, names, ranges, paths, the tracking URI;
4. values pydantic would coerce (``_check_number``): a boolean is not a number nor a number a
   boolean, text is a number only in a real-valued field and in YAML 1.2's decimal syntax
   (``"3e-2"``), numbers are finite, sizes capped;
5. the trial count, as a product (never by expanding the grid), against ``--max-trials``;
6. every grid point / both ends of every range build valid configs;
7. ``check_applicability``: per-method rules against the backbone's config.json.
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from search.loader import MAX_DEPTH, YamlError, load_yaml
from search.paths import checked_path, probe, short
from search.uris import check_tracking_uri, redact
from trainers.config import DECIMAL, DataConfig, OptimConfig, TrainingConfig
from trainers.methods import METHODS
from trainers.registry import unknown_name_message
from trainers.tasks import TASKS, DataError

BUNDLED = Path(__file__).parent / "specs"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$", re.ASCII)
_OPTIM_KEYS = tuple(OptimConfig.__dataclass_fields__)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# A search of more trials than this is refused unless --max-trials raises the cap (README).
DEFAULT_MAX_TRIALS = 100_000
SEED_MAX = 2**32 - 1  # seeds are numpy/torch seeds: [0, 2^32 - 1]
RAY_UNIT = 0.0001  # the smallest fraction of a CPU or GPU a Ray task may ask for
MAX_SIZE = 2**20  # any integer hyperparameter of a method (a rank, a length, a size)
# Upper bounds of spec-level numbers ("*" matches any key); lower bounds live on the fields.
CAPS: dict[tuple[str, ...], float] = {
    ("training", "batch_size"): 2**16, ("training", "eval_batch_size"): 2**16, ("training", "max_length"): 2**16,
    ("training", "max_epochs"): 10**6, ("training", "patience"): 10**6, ("training", "eval_every"): 10**9,
    ("training", "max_train_examples"): 10**9, ("training", "max_eval_examples"): 10**9,
    ("search", "max_concurrent"): 10**5, ("search", "max_failures"): 1000,
    ("search", "scheduler", "grace_period"): 10**6, ("search", "scheduler", "min_samples_required"): 10**6,
    ("search", "scheduler", "reduction_factor"): 1000, ("resources", "cpu"): 1024, ("resources", "gpu"): 64,
}
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class SpecError(ValueError):
    """A spec that cannot run. str() is the one line shown to the user: FIELD: rule, got VALUE,
    with any URI password masked."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(message: str, limit: int = 500) -> str:
    """Our messages' house style: the offending value last, as ", got VALUE"; one line; no secret."""
    text = " ".join(redact(str(message)).split())
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate (YAML "\ud800") prints
    text = re.sub(r" \(got (.*)\)$", r", got \1", text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
    sampler_seed: Seed = 0
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

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        for end in ("low", "high"):
            v = raw.get(end)
            if isinstance(v, EnvText) and _INTEGER_TEXT.fullmatch(v):  # ${LOW}=8: an integer end
                raw[end] = v = int(v)
            if isinstance(v, str):  # "1e-5" as YAML 1.1 leaves it: a real number; other text is not one
                if not DECIMAL.fullmatch(v):
                    raise ValueError(f"{end} must be a number (got {v!r})")
                raw[end] = v = float(v)
            if isinstance(v, bool):
                raise ValueError(f"{end} must be a number; a boolean is not one (got {v!r})")
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{end} must be a finite number (got {v!r})")
        if "log" in raw and not isinstance(raw["log"], bool):
            raise ValueError(f"log must be true or false (got {raw['log']!r})")
        return raw

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
    # default: the C library's own allocator settings. lean: trial workers start with glibc
    # settings that hand freed activation-sized blocks back to the OS at once: about a fifth less
    # resident memory per CPU trial, for 10-30% more time per step (trainers/memory.py)
    malloc: Literal["default", "lean"] = "default"

    @field_validator("cpu", "gpu")
    @classmethod
    def _ray_unit(cls, v: float) -> float:
        if 0 < v < RAY_UNIT:  # Ray counts resources in units of 0.0001 and refuses less at run time
            raise ValueError(f"must be 0 or at least {RAY_UNIT} (Ray's smallest resource unit) (got {v!r})")
        return v


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
    seeds: list[Seed] = Field(default=[0], min_length=1)
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
        return checked_backbone(v)

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
    def _check(self, info: ValidationInfo) -> "Spec":
        cap = (info.context or {}).get("max_trials", DEFAULT_MAX_TRIALS)
        total = self.trial_count()
        if cap is not None and total > cap:
            raise ValueError(f"trials: at most {cap:,} per search (--max-trials raises the cap), got {total:,} "
                             f"(= tasks x assignments x seeds)")
        for method in self.methods:
            try:
                if self.search.algorithm == "grid":
                    self.assignments(method)  # every grid point must build valid configs
                else:
                    check_sampled_space(self, method)
            except ValueError as e:
                raise ValueError(f"methods.{e}") from e
        check_applicability(self, backbone_config(self.backbone))
        if self.data.source == "local":
            _check_data_dir(self.data.dir, self.tasks)
        return self

    def assignment_count(self, method: str) -> int:
        """How many assignments a method's grid has (a product; a range counts once)."""
        return math.prod(len(v) if isinstance(v, list) else 1 for v in self.methods[method].values())

    def trial_count(self) -> int:
        """tasks × assignments × seeds, computed, never expanded."""
        if self.search.algorithm == "grid":
            per_task = sum(self.assignment_count(m) for m in self.methods)
        else:
            per_task = (self.search.num_samples or 0) * len(self.methods)
        return len(self.tasks) * per_task * len(self.seeds)

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
            if isinstance(values, list):  # a repeated value would run the same trials twice
                try:
                    _unique(values, key)
                except ValueError as e:
                    raise ValueError(f"{method}.{key}: {e}") from None
        if "lr" not in grid:
            raise ValueError(f"{method}.lr: is required, as a value or a list (got nothing)")
        return grid

    def build_point(self, method: str, point: dict[str, Any]) -> tuple[OptimConfig, dict[str, Any]]:
        """One assignment (hyperparameter -> value) → (optimizer config, method params), validated."""
        cls = METHODS[method].Config
        optim = _build(OptimConfig, {k: v for k, v in point.items() if k in _OPTIM_KEYS}, method)
        rest = {k: v for k, v in point.items() if k not in _OPTIM_KEYS}
        if METHODS[method].validate_params is not None:  # keys that are not a fixed dataclass (peft)
            for key, raw in rest.items():
                _check_number(f"{method}.{key}", raw, raw, MAX_SIZE)
            try:
                return optim, METHODS[method].validate_params(rest)
            except ValueError as e:
                raise ValueError(f"{method}.{e}") from None
        params = _build(cls, rest, method)
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
    """Every choice and both ends of every range must build valid configs (others at their first);
    a range of floats must fit a real-valued hyperparameter (it samples fractions in between)."""
    grid = spec.check_keys(method)
    first = {k: (v.low if isinstance(v, Range) else v[0]) for k, v in grid.items()}
    for key, values in grid.items():
        for value in ([values.low, values.high] if isinstance(values, Range) else values):
            spec.build_point(method, first | {key: value})
        inside = _fraction_inside(values) if isinstance(values, Range) and not values.is_int else None
        if inside is not None:
            try:
                spec.build_point(method, first | {key: inside})
            except ValueError:
                raise ValueError(f"{method}.{key}: a range with a float end samples fractions in between, and "
                                 f"{key} takes whole numbers; give integer low and high "
                                 f"(got {values.model_dump()})") from None


def _fraction_inside(r: Range) -> float | None:
    """A value strictly inside the range that is not a whole number, if there is one to hand."""
    mid = math.sqrt(r.low * r.high) if r.log else (r.low + r.high) / 2
    if float(mid).is_integer():
        mid = math.nextafter(mid, r.high)
    return mid if r.low < mid < r.high and not float(mid).is_integer() else None


@functools.lru_cache(maxsize=None)
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def _build(cls: type, values: dict[str, Any], method: str):
    try:
        built = _adapter(cls).validate_python(values)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if loc:
            raise ValueError(f"{method}.{loc}: {msg} (got {err.get('input')!r})") from None
        raise ValueError(f"{method}.{msg}") from None
    for key, raw in values.items():  # what pydantic's lax mode coerced
        _check_number(f"{method}.{key}", raw, getattr(built, key), MAX_SIZE)
    return built


def _check_number(field: str, raw: Any, value: Any, cap: float | None) -> None:
    """What pydantic's lax mode let through, from the value as given (``raw``) and as validated."""
    if isinstance(raw, bool) and not isinstance(value, bool):
        raise ValueError(f"{field}: must be a number; a boolean is not one (got {raw!r})")
    if isinstance(value, bool) and not isinstance(raw, bool) and not _env_value_ok(raw, value):
        raise ValueError(f"{field}: must be true or false (got {raw!r})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{field}: must be a finite number (got {raw!r})")
    if isinstance(raw, str) and isinstance(value, int) and not isinstance(value, bool) and not _env_value_ok(raw, value):
        raise ValueError(f"{field}: must be a whole number, not text (write 8, not \"8\") (got {raw!r})")
    if isinstance(raw, str) and isinstance(value, float) and not DECIMAL.fullmatch(raw):
        raise ValueError(f"{field}: must be a number; text is read as one only in YAML 1.2's decimal syntax, "
                         f"like 3e-2 (got {raw!r})")
    if cap is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
        raise ValueError(f"{field}: must be <= {cap:,} (got {raw!r})")


def check_values(raw: Any, value: Any, path: tuple[str, ...] = ()) -> None:
    """Walk the raw spec beside the validated one: booleans taken as numbers, non-finite numbers
    (``.inf``, ``"nan"``), numbers beyond CAPS. Method grids are checked where points are built."""
    if path == ("methods",):
        return
    if isinstance(raw, dict) and isinstance(value, dict):
        for k in raw.keys() & value.keys():
            check_values(raw[k], value[k], (*path, str(k)))
    elif isinstance(raw, (list, tuple)) and isinstance(value, (list, tuple)) and len(raw) == len(value):
        for i, (r, v) in enumerate(zip(raw, value)):
            check_values(r, v, (*path[:-1], f"{path[-1]}[{i}]") if path else (f"[{i}]",))
    else:
        _check_number(".".join(path), raw, value, CAPS.get(path))


def check_applicability(spec: "Spec", config: dict[str, Any] | None) -> None:
    """THE place for method × backbone rules, from the backbone's config.json (``config``, read
    with json: no torch, no weights; None for a hub id not available locally), through the family
    table (trainers/families.py): the model type is known and the task format applies to its
    family; each method's ``check_backbone`` holds on every assignment (BitFit needs biases,
    PASTA special tokens, prefix tuning an encoder); max_length plus the method's prompt fits the
    backbone's positions; DePT's rows of A fit max_length."""
    if config is None:
        return
    from trainers.families import arch_for, resolve_route

    arch = arch_for(config)
    resolve_route(arch, spec.task_format)
    tokenizer = None
    for method in spec.methods:
        cls = METHODS[method]
        for _, params in _points(spec, method):
            try:
                m = cls.from_params(params, training=spec.training)
                # a decoder's prefix is a cache of earlier positions: the text's positions start after it
                cached = m.extra_keys() if arch.prefix_route == "cache" else 0
                _check_positions(arch.positions(config), spec.training.max_length + m.extra_positions() + cached)
                if m.extra_keys():
                    _check_window(arch.window(config), spec.training.max_length + m.extra_positions() + m.extra_keys())
                if cls.has_backbone_check():
                    if tokenizer is None and cls.needs_tokenizer:
                        tokenizer = _tokenizer(spec.backbone)
                    cls.check_backbone(m.config, model_config=config, tokenizer=tokenizer)
            except ValueError as e:
                raise ValueError(f"methods.{method}: not applicable to backbone {short(spec.backbone)} "
                                 f"({arch.family}, {config.get('model_type')}): {e}") from None


def _tokenizer(backbone: str):
    from transformers import AutoTokenizer

    from trainers.backbone import resolve_backbone

    return AutoTokenizer.from_pretrained(resolve_backbone(backbone))


def _points(spec: "Spec", method: str):
    """Every grid point, or for random/optuna every choice and both ends of every range."""
    if spec.search.algorithm == "grid":
        return spec.assignments(method)
    grid = spec.check_keys(method)
    first = {k: (v.low if isinstance(v, Range) else v[0]) for k, v in grid.items()}
    return [spec.build_point(method, first | {k: x}) for k, v in grid.items()
            for x in ([v.low, v.high] if isinstance(v, Range) else v)]


def _check_positions(limit: int | None, needed: int) -> None:
    if limit is not None and needed > limit:
        raise ValueError(f"training.max_length: plus the method's prompt must fit the backbone's {limit} "
                         f"positions (got {needed})")


def _check_window(window: int | None, needed: int) -> None:
    if window is not None and needed > window:
        raise ValueError(f"training.max_length: plus the prefix must fit the backbone's sliding window of {window} "
                         f"tokens, or tokens past it lose sight of the prefix (got {needed})")


def checked_backbone(v: str) -> str:
    """A model directory (made absolute; it holds a config and weights) or a valid hub id."""
    path = checked_path("", v)
    kind = probe(path, v)
    if kind == "dir":
        _check_model_dir(path, v)
        return str(path.resolve())
    if v.startswith(("/", ".", "~")) or not _HUB_ID.fullmatch(v) or kind is not None or not _valid_repo_id(v):
        raise ValueError(f"must be an existing model directory or a Hugging Face id like org/name (got {v!r})")
    return v


def backbone_option(v: str) -> str:
    """A command's --backbone, checked as the spec's backbone is, config.json included."""
    try:
        v = checked_backbone(v)
        backbone_config(v)
    except ValueError as e:
        raise ValueError(f"--backbone: {str(e).removeprefix('backbone: ')}") from None
    return v


def backbone_config(backbone: str) -> dict[str, Any] | None:
    """The backbone's config.json, if the backbone is a local directory or a packaged model."""
    from trainers.backbone import PACKAGED_MODELS, resolve_backbone

    source = backbone if Path(backbone).is_absolute() or backbone not in PACKAGED_MODELS else resolve_backbone(backbone)
    path = Path(source)
    if not path.is_absolute():
        cached = _hub_cached_config(backbone)
        return None if cached is None else _read_config(cached, backbone)
    if not (path / "config.json").is_file():
        return None
    return _read_config(path / "config.json", backbone)


def fetch_hub_config(spec: "Spec") -> str | None:
    """`validate`, and `run` on this machine, for a hub backbone whose config.json is not cached: one request asks
    the hub about the model (no retries), and its config.json is fetched (one small file), so a
    model the hub says does not exist, or a gated one this token cannot read, is one line before
    anything is written, and the method × backbone rules see its config as for a local one. A hub
    that cannot be reached (offline, HF_HUB_OFFLINE) refuses nothing: the returned note says the
    rules wait for the trial, which may have the network or a cache this check does not."""
    import logging

    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if backbone_config(spec.backbone) is not None:
        return None
    later = (f"note: the Hugging Face hub cannot be reached for {spec.backbone}'s config.json: the method × "
             f"backbone rules are checked when a trial loads it")
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):  # huggingface_hub's reading
        return later  # (and its import, 0.3 s of CPU, spared)
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its retry lines; the outcome is one line of ours
    try:
        HfApi().model_info(spec.backbone, timeout=10)
        hf_hub_download(spec.backbone, "config.json")
    except GatedRepoError:  # a subclass of RepositoryNotFoundError
        raise SpecError(f"backbone: the hub model is gated; accept its terms and `hf auth login`, "
                        f"got {short(spec.backbone)}") from None
    except RepositoryNotFoundError:
        raise SpecError(f"backbone: no such model on the Hugging Face hub (or it is private), "
                        f"got {short(spec.backbone)}") from None
    except Exception:  # no network, offline mode, a timeout, any other HTTP or OS failure of the hub
        return later
    finally:
        hub_log.setLevel(level)
    check_applicability(spec, backbone_config(spec.backbone))
    return None


def _hub_cached_config(repo_id: str) -> Path | None:
    """A hub id's config.json if the Hugging Face cache already holds it (no network): a model a
    user has downloaded before is checked like a local directory."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a valid repo id: the backbone field's own rules speak for it
        return None
    return Path(found) if isinstance(found, str) else None


def _valid_repo_id(v: str) -> bool:
    """The Hub's own rules for a repo id (no '--' or '..', at most 96 characters a part)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(v)
    except HFValidationError:
        return False
    return True


# config.json sizes that the family table and the methods' checks read: whole numbers >= 1
_CONFIG_SIZES = ("max_position_embeddings", "n_positions", "hidden_size", "d_model", "n_embd", "vocab_size",
                 "num_hidden_layers", "n_layer", "num_layers", "num_attention_heads", "n_head", "num_heads",
                 "num_key_value_heads", "head_dim", "d_kv", "intermediate_size", "sliding_window")


def _read_config(file: Path, shown: str) -> dict[str, Any]:
    """config.json as transformers reads it (UTF-8 JSON, no BOM), holding what validation reads."""
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as e:
        raise ValueError(f"backbone: {file.name} cannot be read ({e.strerror}), got {short(shown)}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"backbone: {file.name} is not readable JSON (it must be UTF-8 text; byte "
                         f"{e.object[e.start]:#04x} at offset {e.start} is not), got {short(shown)}") from None
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as e:
        reason = str(e) if isinstance(e, ValueError) else "nested too deep"
        raise ValueError(f"backbone: {file.name} is not readable JSON ({reason}), got {short(shown)}") from None
    if not isinstance(config, dict):
        raise ValueError(f"backbone: {file.name} must hold a JSON object, got {type(config).__name__} in "
                         f"{short(shown)}")
    kind = config.get("model_type")
    if not isinstance(kind, str) or not kind:
        what = "names no model_type (save_pretrained writes it)" if kind is None else "model_type must be text"
        raise ValueError(f"backbone: {file.name} {what}, got {short(kind) if kind is not None else short(shown)}")
    for key in _CONFIG_SIZES:
        v = config.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"backbone: {file.name}'s {key} must be a whole number >= 1, got {short(v)}")
    return config


_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def _check_model_dir(path: Path, shown: str) -> None:
    if not (path / "config.json").is_file():
        raise ValueError(f"a model directory must hold config.json (as save_pretrained writes it) (got {shown!r})")
    _read_config(path / "config.json", shown)
    if not any((path / w).is_file() for w in _WEIGHTS):
        raise ValueError(f"a model directory must hold its weights ({', '.join(_WEIGHTS[:2])}) (got {shown!r})")


def _unique(values: list, field: str) -> None:
    """No value twice (in one pass: a list of 10^5 seeds is refused by the trial cap, not hung on)."""
    seen: set = set()
    for x in values:
        key = (isinstance(x, bool), x) if _hashable(x) else (None, json.dumps(x, sort_keys=True, default=repr))
        if key in seen:
            raise ValueError(f"must not repeat values (got {x!r} twice)")
        seen.add(key)


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _check_data_dir(directory: str | None, tasks: list[str]) -> None:
    path = checked_path("data.dir", directory or "")
    kind = probe(path, directory)
    if kind is None:
        raise ValueError(f"data.dir: directory does not exist (got {directory!r})")
    if kind != "dir":
        raise ValueError(f"data.dir: must be a directory, got a {kind} {directory!r}")
    for task in tasks:
        for split in ("train", "dev", *TASKS[task].extra_eval_splits):
            try:
                TASKS[task].local_file(path, split)
            except DataError as e:
                raise ValueError(f"data.dir: {e}") from None


# ---- loading -------------------------------------------------------------------------------
def resolve_spec_path(ref: str) -> Path:
    """A path, or the name of a spec bundled with peftsearch (search/specs/NAME.yaml)."""
    try:
        path = checked_path("spec", ref)
        kind = probe(path, ref)
    except ValueError as e:
        raise SpecError(str(e) if str(e).startswith("spec:") else f"spec: {e}") from None
    if kind == "file":
        return path
    if kind is not None:
        raise SpecError(f"spec: must be a YAML file, got a {kind} {ref!r}")
    bundled = BUNDLED / f"{ref.removesuffix('.yaml')}.yaml"
    if "/" not in ref and len(ref) < 200 and bundled.is_file():
        return bundled
    names = sorted(p.stem for p in BUNDLED.glob("*.yaml"))
    raise SpecError(f"spec: no such file, and no bundled spec of that name (bundled: {', '.join(names)}) (got {short(ref)})")


def load_spec(ref: str | Path, *, overrides: dict[str, Any] | None = None, max_trials: int | None = DEFAULT_MAX_TRIALS,
              environ: dict[str, str] | None = None) -> Spec:
    """The whole validation pass, from a file (or bundled name) to a Spec, or one SpecError."""
    path = resolve_spec_path(str(ref))
    try:
        raw = load_yaml(path)
    except YamlError as e:
        raise SpecError(str(e)) from None
    except OSError as e:
        raise SpecError(f"spec: cannot be read ({e.strerror}) (got {short(str(path))})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: must be a YAML mapping of spec keys (got {type(raw).__name__})")
    for dotted, value in (overrides or {}).items():
        _set(raw, dotted, value)
    return parse_spec(raw, source=str(path), max_trials=max_trials, environ=environ)


def parse_spec(raw: dict[str, Any], *, source: str = "spec", max_trials: int | None = DEFAULT_MAX_TRIALS,
               environ: dict[str, str] | None = None) -> Spec:
    # Relative paths in a spec are relative to where the user runs peftsearch (its cwd).
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: must be a YAML mapping of spec keys (got {type(raw).__name__})")
    check_plain(raw)
    raw = interpolate(raw, os.environ if environ is None else environ)
    try:
        spec = Spec.model_validate(raw, context={"max_trials": max_trials})
        check_values(raw, spec.model_dump())
    except ValidationError as e:
        raise SpecError(format_error(e)) from None
    except ValueError as e:
        raise SpecError(str(e)) from None
    return spec


def check_plain(value: Any, where: str = "", depth: int = 0) -> None:
    """A spec given as a dict (the API, search.json) holds what a spec file can: text keys; text,
    numbers, booleans, null, lists and mappings; at most MAX_DEPTH levels (a cycle is too deep)."""
    field = where or "spec"
    if depth > MAX_DEPTH:
        raise SpecError(f"{field}: nested more than {MAX_DEPTH} levels deep; a spec needs 5, got deeper")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise SpecError(f"{field}: a key must be text, got {short(k)} ({type(k).__name__})")
            check_plain(v, f"{where}.{k}" if where else k, depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]", depth + 1)
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        raise SpecError(f"{field}: a spec value is text, a number, a boolean, null, a list or a mapping, "
                        f"got {short(value)} ({type(value).__name__})")


_INTEGER_TEXT = re.compile(r"\s*[-+]?[0-9]+\s*")  # an environment variable's text that spells an integer


class EnvText(str):
    """A whole value that was one ``${NAME}``: the environment holds only text, so a number or
    boolean field takes it as the number or boolean it spells (``rank: ${RANK}`` with RANK=8),
    where text written in the spec itself (``rank: "8"``) is refused."""


def _env_value_ok(raw: Any, value: Any) -> bool:
    if not isinstance(raw, EnvText):
        return False
    if isinstance(value, bool):
        return raw.strip().lower() in ("true", "false")
    return bool(_INTEGER_TEXT.fullmatch(raw)) if isinstance(value, int) else True


def expand_env(value: str, where: str, environ) -> str:
    """Every ``${NAME}`` in ``value`` replaced by the environment's NAME; a ``${`` that is not
    closed, names nothing, or names no variable that is set is one line naming the field. A value
    that is one ``${NAME}`` and nothing else comes back as ``EnvText``."""
    out, i = [], 0
    while (start := value.find("${", i)) != -1:
        end = value.find("}", start + 2)
        if end == -1:
            raise SpecError(f"{where}: ${{ starts an environment variable and no }} closes it; write ${{NAME}} "
                            f"(got {value!r})")
        name = value[start + 2:end]
        if not _ENV_NAME.fullmatch(name):
            rule = "names no variable" if not name else "is not a variable name (letters, digits and _)"
            raise SpecError(f"{where}: ${{{name}}} {rule}; write ${{NAME}} (got {value!r})")
        if name not in environ:
            raise SpecError(f"{where}: ${{{name}}} is not set in the environment (got {value!r})")
        out += [value[i:start], environ[name]]
        i = end + 1
    whole = value.startswith("${") and value.find("}") == len(value) - 1
    return EnvText(environ[value[2:-1]]) if whole else "".join(out) + value[i:]


def interpolate(raw: dict[str, Any], environ) -> dict[str, Any]:
    """``${VAR}`` in any string becomes the environment's VAR; a spec without tracking.uri takes
    MLFLOW_TRACKING_URI. So a spec file need not hold a secret at all."""
    def sub(value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {k: sub(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return expand_env(value, where or "spec", environ)
        return value

    out = sub(raw, "")
    tracking = out.get("tracking")
    if environ.get("MLFLOW_TRACKING_URI") and (tracking is None or (isinstance(tracking, dict) and "uri" not in tracking)):
        out["tracking"] = dict(tracking or {}) | {"uri": environ["MLFLOW_TRACKING_URI"]}
    return out


def format_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = [str(p) for p in err["loc"]]
    msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{'.'.join(loc)}: {unknown_name_message('key', loc[-1], _valid_keys(loc[:-1]))}"
    m = re.match(r"^([\w.\[\]]+): (.*)$", msg, re.S)
    if m and err["type"] == "value_error":
        head, field = m.group(1), ".".join(loc)
        if head == field or head.startswith(f"{field}.") or not loc:  # the message names its field already
            return f"{head}: {m.group(2)}"
        sep = "" if head.startswith("[") else "."
        return f"{field}{sep}{head}: {m.group(2)}"
    if err["type"] == "missing":  # the input is the whole parent mapping: nothing worth echoing
        return f"{'.'.join(loc) or 'spec'}: {msg}, got nothing"
    msg = msg.replace(", got a number with a fractional part", ", not a number with a fractional part")
    got = "" if err["type"] == "value_error" or "input" not in err else f" (got {short(err['input'], 120)})"
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
