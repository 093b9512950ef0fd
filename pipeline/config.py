"""One typed configuration, read and validated once at the entry point."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_origin, get_type_hints

import yaml

from pipeline.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")  # the default candidates; pipeline.precision lists every mode


@dataclass(frozen=True)
class DataConfig:
    path: str = "data"
    label_column: str = "label"
    test_size: float = 0.2
    split_seed: int = 0


@dataclass(frozen=True)
class ValidationConfig:
    """The dataset contract lives in the suite; the thresholds of the data-quality checks live here."""

    suite: str = "expectations/digits.json"
    report_dir: str = "out/validation"  # report.json, data_docs.html, label_issues.csv; relative to the project
    min_class_count: int = 10
    max_imbalance_ratio: float = 10.0  # majority/minority rows
    min_class_share: float = 0.02
    max_test_overlap: float = 0.0  # share of test rows whose features also occur in train
    max_conflicting_rows: int = 0  # rows whose identical features carry different labels
    max_target_leakage: float = 0.95  # balanced accuracy of the best single feature
    label_errors: bool = True  # false skips the cleanlab check; the report then warns that it was skipped
    max_label_error_rate: float = 0.05  # cleanlab's estimate
    label_error_max_rows: int = 20000  # above it, a random subsample (the report says so)
    label_error_folds: int = 5
    fail_on_pii: bool = True
    warn_fraction: float = 0.8  # warn once a value is this close to its threshold


@dataclass(frozen=True)
class TrainConfig:
    # 64 -> 1024 -> 1024 -> 1024 -> 10 at batch 512: big enough that the matmuls dominate a step, so
    # the precision of those matmuls is what the throughput measures (bench/precision_speedup.py).
    model: str = "mlp"  # mlp, cnn (features as a square image) or transformer (image rows as tokens)
    hidden_size: int = 1024
    hidden_layers: int = 3
    epochs: int = 15
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    warmup_steps: int = 5
    device: str = "auto"
    threads: int = 0  # 0: leave torch's default
    scheduler: str = "none"  # or "cosine"; steps only when the optimizer stepped
    init_scale: float = 65536.0  # fp16's dynamic loss scaler
    growth_interval: int = 2000  # fp16's dynamic loss scaler
    stop_on_nonfinite: bool = True  # stop at the end of an epoch that saw a non-finite loss
    max_skipped_share: float = 0.5  # stop once more optimizer steps than this were skipped for overflow
    checkpoint_every: int = 5  # epochs between checkpoints (and one at the end); 0: none
    checkpoint_dir: str = "out/checkpoints"  # relative to the project root
    system_metrics_s: float = 2.0  # MLflow system metrics (CPU, memory, GPU) sampling interval; 0: off


@dataclass(frozen=True)
class ProbeConfig:
    """A short timed run of every candidate before full training; 0 steps turns it off."""

    steps: int = 20
    max_slowdown: float = 2.0  # drop a candidate whose probe is more than this many times slower than fp32
    max_skipped_share: float = 0.5  # drop a candidate that skipped more probe steps than this for overflow


SELECTIONS = ("fastest", "most-accurate")  # or a precision name: always that one, if it passes


@dataclass(frozen=True)
class GateConfig:
    """Each candidate against the fp32 baseline; see pipeline/gate.py for how each value is read."""

    selection: str = "fastest"
    min_accuracy: float = 0.9  # absolute floor, the baseline included
    # Quality: a candidate may be worse than fp32 by at most the absolute tolerance AND at most the
    # relative one (a share of fp32's value), like TFX's change thresholds. Accuracy uses the lower
    # bound of the paired bootstrap interval of the delta, not the point estimate.
    # 0.03: `mpops noise-floor` on the bundled digits (360 test rows) saw fp32 seeds differ by up to
    # 0.033 on this bound; candidates share fp32's seed and data order, so they sit well inside it.
    accuracy_tolerance: float = 0.03
    macro_f1_tolerance: float = 0.015
    precision_tolerance: float = 0.015  # macro precision
    recall_tolerance: float = 0.015  # macro recall
    relative_tolerance: float = 0.05
    two_sided: bool = False  # true: a change beyond tolerance in the good direction fails too
    ci_level: float = 0.95
    bootstrap_samples: int = 2000
    mcnemar_alpha: float = 0.05  # fails a candidate significantly worse than fp32 on the discordant pairs
    min_agreement: float = 0.95  # share of test rows where candidate and fp32 predict the same class
    max_prob_diff: float = 1.0  # largest |p_candidate - p_fp32| over rows and classes; 1.0: reported only
    max_class_recall_drop: float = 0.1  # per class, fp32 recall minus candidate recall
    max_ece_increase: float = 0.03
    max_brier_increase: float = 0.03
    fgsm_epsilon: float = 0.1  # FGSM step, in units of each feature's training standard deviation
    max_fgsm_drop: float = 0.05  # (fp32 - candidate) accuracy under FGSM
    min_speedup: float = 1.0  # training throughput vs fp32
    max_memory_ratio: float = 1.5  # peak training memory vs fp32
    max_latency_ratio: float = 2.0  # p50 inference latency at batch 256 vs fp32
    latency_repeats: int = 20  # timed calls at batch 256 (10x that at batch 1); 0 fails the latency check
    max_skipped_share: float = 0.05  # optimizer steps skipped for overflow (fp16)


@dataclass(frozen=True)
class SweepConfig:
    """`mpops sweep` and `mpops noise-floor`."""

    precisions: tuple[str, ...] = ()  # empty: every precision this device can run
    batch_sizes: tuple[int, ...] = ()  # empty: train.batch_size only
    noise_seeds: int = 5  # fp32 trainings for the noise floor (seeds train.seed, train.seed+1, ...)


@dataclass(frozen=True)
class RegistryConfig:
    model_name: str = "digits-classifier"
    experiment: str = "mpops"


@dataclass(frozen=True)
class MonitorConfig:
    """Drift thresholds of `mpops monitor`; the reference they compare with is stored at registration."""

    experiment: str = "mpops-monitoring"  # one MLflow run per monitor call
    report_dir: str = "out/monitoring"  # drift report (CSV, Markdown, JSON, plots); relative to the project
    psi_bins: int = 10  # quantile bins of the training split (read at registration, stored in the reference)
    reference_sample: int = 2000  # training values kept per feature for the KS test (read at registration)
    psi_threshold: float = 0.2  # a feature drifts when its PSI passes this ...
    ks_alpha: float = 0.01  # ... and its KS p-value is below this alpha divided by the number of features
    max_drifted_share: float = 0.0  # the batch drifts when more features than this share drift (0: any one)
    max_prediction_psi: float = 0.2  # PSI of the predicted class shares vs the test split's
    max_accuracy_drop: float = 0.05  # batches with labels: registered test accuracy minus batch accuracy
    max_agreement_drop: float = 0.02  # champion vs its fp32 twin: agreement at registration minus on the batch
    max_fp16_overflow: int = 0  # feature values with |x| > 65504, which fp16 cannot hold
    plot_top_k: int = 6  # per-feature plots: the drifted ones plus this many more by PSI


@dataclass(frozen=True)
class Config:
    precisions: tuple[str, ...] = PRECISIONS
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    def as_flat_dict(self) -> dict[str, Any]:
        """Dotted keys (`train.lr`) for MLflow params."""
        out: dict[str, Any] = {"precisions": ",".join(self.precisions)}
        for f in fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                for k, v in dataclasses.asdict(section).items():
                    out[f"{f.name}.{k}"] = v
        return out


def _coerce(value: Any, typ: Any, where: str) -> Any:
    if get_origin(typ) is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"config: {where} must be a list, got {value!r}")
        item_type = typ.__args__[0]
        return tuple(_coerce(str(i).strip(), item_type, where) for i in items if str(i).strip())
    if typ is bool:
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
        elif isinstance(value, bool):
            return value
        raise ConfigError(f"config: {where} must be true or false, got {value!r}")
    try:
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return typ(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config: {where} must be {typ.__name__}, got {value!r}") from None


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config: section {prefix or 'top level'} must be a mapping")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"config: unknown key {where!r}; known keys: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in raw.items():
        typ, where = hints[name], f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value, where)
        else:
            kwargs[name] = _coerce(value, typ, where)
    return cls(**kwargs)


def _set_dotted(raw: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    *parents, leaf = key.strip().split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {p} is not a section")
    node[leaf] = yaml.safe_load(value) if value.strip() else value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read YAML (optional), apply `key=value` overrides, validate, return the frozen Config."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}".splitlines()[0]) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
    for assignment in overrides or []:
        _set_dotted(raw, assignment)
    cfg = _build(Config, raw, "")
    validate_config(cfg)
    return cfg


def validate_config(cfg: Config) -> None:
    if not cfg.precisions:
        raise ConfigError("config: precisions is empty; give at least fp32")
    if "fp32" not in cfg.precisions:
        raise ConfigError("config: precisions must include fp32: every candidate is gated against the fp32 baseline")
    if len(set(cfg.precisions)) != len(cfg.precisions):
        raise ConfigError("config: precisions lists a precision twice")
    checks = [
        (0.0 < cfg.data.test_size < 1.0, "data.test_size must be between 0 and 1"),
        (cfg.train.hidden_size > 0, "train.hidden_size must be positive"),
        (cfg.train.hidden_layers >= 0, "train.hidden_layers must be 0 or more"),
        (cfg.train.epochs > 0, "train.epochs must be positive"),
        (cfg.train.batch_size > 0, "train.batch_size must be positive"),
        (cfg.train.lr > 0, "train.lr must be positive"),
        (cfg.train.warmup_steps >= 0, "train.warmup_steps must be 0 or more"),
        (cfg.train.scheduler in ("none", "cosine"), "train.scheduler must be none or cosine"),
        (cfg.train.model in ("mlp", "cnn", "transformer"), "train.model must be mlp, cnn or transformer"),
        (cfg.train.init_scale > 0 and cfg.train.growth_interval > 0,
         "train.init_scale and train.growth_interval must be positive"),
        (0.0 <= cfg.train.max_skipped_share <= 1.0, "train.max_skipped_share must be between 0 and 1"),
        (cfg.train.checkpoint_every >= 0, "train.checkpoint_every must be 0 or more"),
        (cfg.train.system_metrics_s >= 0, "train.system_metrics_s must be 0 or more"),
        (cfg.probe.steps >= 0, "probe.steps must be 0 or more"),
        (cfg.probe.max_slowdown >= 1.0, "probe.max_slowdown must be 1 or more"),
        (0.0 <= cfg.probe.max_skipped_share <= 1.0, "probe.max_skipped_share must be between 0 and 1"),
        (cfg.train.device in ("auto", "cpu") or cfg.train.device.startswith("cuda"),
         "train.device must be auto, cpu or cuda[:N]"),
        *_gate_checks(cfg.gate, cfg.precisions),
        (all(b > 0 for b in cfg.sweep.batch_sizes), "sweep.batch_sizes must be positive"),
        (cfg.sweep.noise_seeds >= 2, "sweep.noise_seeds must be 2 or more: the noise is seed-to-seed"),
        (bool(cfg.registry.model_name.strip()), "registry.model_name must not be empty"),
        *_validation_checks(cfg.validation),
        *_monitor_checks(cfg.monitor),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"config: {message}")
    _check_precisions(cfg)


def _check_precisions(cfg: Config) -> None:
    """Modes the device cannot run, and settings that do nothing for the chosen modes, are refused here."""
    import torch

    from pipeline.precision import check_supported, resolve_device

    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config: train.device is {cfg.train.device} but no CUDA device is visible; use auto or cpu")
    for name in cfg.precisions:
        check_supported(name, device)
    defaults = TrainConfig()
    scaler_set = [k for k in ("init_scale", "growth_interval") if getattr(cfg.train, k) != getattr(defaults, k)]
    if scaler_set and "fp16" not in cfg.precisions:
        raise ConfigError(f"config: train.{scaler_set[0]} configures fp16's loss scaler, but the precisions "
                          f"({','.join(cfg.precisions)}) have none; bf16 needs no loss scaling: drop it or add fp16")


def _gate_checks(g: GateConfig, precisions: tuple[str, ...]) -> list[tuple[bool, str]]:
    from pipeline.precision import PRECISIONS as known

    shares = ("min_accuracy", "accuracy_tolerance", "macro_f1_tolerance", "precision_tolerance", "recall_tolerance",
              "relative_tolerance", "mcnemar_alpha", "min_agreement", "max_prob_diff", "max_class_recall_drop",
              "max_ece_increase", "max_brier_increase", "max_fgsm_drop", "max_skipped_share")
    return [
        (g.selection in SELECTIONS or g.selection in known,
         f"gate.selection must be {', '.join(SELECTIONS)} or a precision name"),
        (g.selection in SELECTIONS or g.selection in precisions,
         f"gate.selection is {g.selection} but precisions ({','.join(precisions)}) do not train it"),
        *[(0.0 <= getattr(g, k) <= 1.0, f"gate.{k} must be between 0 and 1") for k in shares],
        (0.5 <= g.ci_level < 1.0, "gate.ci_level must be in [0.5, 1)"),
        (g.bootstrap_samples >= 100, "gate.bootstrap_samples must be 100 or more"),
        (g.fgsm_epsilon >= 0, "gate.fgsm_epsilon must be 0 or more"),
        (g.min_speedup > 0 and g.max_memory_ratio > 0 and g.max_latency_ratio > 0,
         "gate.min_speedup, gate.max_memory_ratio and gate.max_latency_ratio must be positive"),
        (g.latency_repeats >= 0, "gate.latency_repeats must be 0 or more"),
    ]


def _validation_checks(v: ValidationConfig) -> list[tuple[bool, str]]:
    return [
        (v.min_class_count >= 1, "validation.min_class_count must be 1 or more"),
        (v.max_imbalance_ratio >= 1.0, "validation.max_imbalance_ratio must be 1 or more"),
        *[(0.0 <= getattr(v, k) <= 1.0, f"validation.{k} must be between 0 and 1")
          for k in ("min_class_share", "max_test_overlap", "max_target_leakage", "max_label_error_rate")],
        (v.max_conflicting_rows >= 0, "validation.max_conflicting_rows must be 0 or more"),
        (v.label_error_max_rows >= 100, "validation.label_error_max_rows must be 100 or more"),
        (v.label_error_folds >= 2, "validation.label_error_folds must be 2 or more"),
        (0.0 < v.warn_fraction <= 1.0, "validation.warn_fraction must be in (0, 1]"),
    ]


def _monitor_checks(m: MonitorConfig) -> list[tuple[bool, str]]:
    return [
        (bool(m.experiment.strip()), "monitor.experiment must not be empty"),
        (m.psi_bins >= 2, "monitor.psi_bins must be 2 or more"),
        (m.reference_sample >= 50, "monitor.reference_sample must be 50 or more"),
        (m.psi_threshold > 0, "monitor.psi_threshold must be positive"),
        (0.0 < m.ks_alpha < 1.0, "monitor.ks_alpha must be between 0 and 1"),
        *[(0.0 <= getattr(m, k) <= 1.0, f"monitor.{k} must be between 0 and 1")
          for k in ("max_drifted_share", "max_accuracy_drop", "max_agreement_drop")],
        (m.max_prediction_psi > 0, "monitor.max_prediction_psi must be positive"),
        (m.max_fp16_overflow >= 0, "monitor.max_fp16_overflow must be 0 or more"),
        (m.plot_top_k >= 0, "monitor.plot_top_k must be 0 or more"),
    ]


def with_precisions(cfg: Config, precisions: str) -> Config:
    new = replace(cfg, precisions=_coerce(precisions, tuple[str, ...], "--precisions"))
    validate_config(new)
    return new


def with_data_path(cfg: Config, path: str) -> Config:
    return replace(cfg, data=replace(cfg.data, path=path))


__all__ = ["Config", "load_config", "with_precisions", "with_data_path", "PRECISIONS"]
