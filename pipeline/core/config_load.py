"""Reading the configuration: YAML, then overrides, then every rule, once, at the entry point.

Nothing here imports torch or looks at a device; what the device can run is checked by
pipeline.core.device.check_runnable, after the config is read.
"""
from __future__ import annotations

import dataclasses
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Mapping, get_origin, get_type_hints

import yaml

from pipeline.core.config import (MODEL_ZOO, SELECTIONS, Config, GateConfig, MonitorConfig, TrainConfig,
                                  ValidationConfig)
from pipeline.core.errors import ConfigError
from pipeline.core.factory import resolve_file_reference
from pipeline.core.modes import BASELINE, MODES, PRECISIONS
from pipeline.core.project import project_root

Overrides = list[str] | Mapping[str, Any] | None  # `key=value` strings (the CLI) or a mapping (a flow parameter)


def _coerce(value: Any, typ: Any, where: str) -> Any:
    if get_origin(typ) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config: {where} must be a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if get_origin(typ) is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"config: {where} must be a list, got {value!r}")
        item_type = typ.__args__[0]
        return tuple(_coerce(str(i).strip(), item_type, where) for i in items if str(i).strip())
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
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
        kwargs[name] = _build(typ, value, where) if dataclasses.is_dataclass(typ) else _coerce(value, typ, where)
    return cls(**kwargs)


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.strip().split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {p} is not a section")
    if isinstance(value, str) and value.strip():
        value = yaml.safe_load(value)  # the same typing as a YAML file: 5 is an int, 1e-3 a float
    node[leaf] = value


def override_pairs(overrides: Overrides) -> list[tuple[str, Any]]:
    """`["train.epochs=5"]` or `{"train.epochs": 5}` as (key, value) pairs."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [(str(k), v) for k, v in overrides.items()]
    pairs = []
    for assignment in overrides:
        key, sep, value = str(assignment).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {assignment!r}")
        pairs.append((key, value))
    return pairs


def load_config(path: str | Path | None = None, overrides: Overrides = None) -> Config:
    """Read YAML (optional), apply the overrides, validate, return the frozen Config."""
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
    for key, value in override_pairs(overrides):
        _set_dotted(raw, key, value)
    cfg = _build(Config, raw, "")
    validate_config(cfg)
    # A model file is found beside the config file first, then in the project.
    folders = (*([Path(path).resolve().parent] if path is not None else []), project_root())
    model = resolve_file_reference(cfg.train.model, folders)
    return replace(cfg, train=replace(cfg.train, model=model)) if model != cfg.train.model else cfg


def with_precisions(cfg: Config, precisions: str) -> Config:
    new = replace(cfg, precisions=_coerce(precisions, tuple[str, ...], "--precisions"))
    validate_config(new)
    return new


def validate_config(cfg: Config) -> None:
    rules = [*_precision_rules(cfg), *_train_rules(cfg.train), *_gate_rules(cfg.gate, cfg.precisions),
             (0.0 < cfg.data.test_size < 1.0, "data.test_size must be between 0 and 1"),
             (len(cfg.data.image_size) == 2 and min(cfg.data.image_size) > 0,
              "data.image_size must be [height, width], both positive"),
             (cfg.data.image_channels in (1, 3), "data.image_channels must be 1 or 3"),
             (cfg.data.label_column not in cfg.data.categorical_columns,
              "data.categorical_columns must not name the label column"),
             (cfg.probe.steps >= 0, "probe.steps must be 0 or more"),
             (cfg.probe.max_slowdown >= 1.0, "probe.max_slowdown must be 1 or more"),
             (0.0 <= cfg.probe.max_skipped_share <= 1.0, "probe.max_skipped_share must be between 0 and 1"),
             (all(b > 0 for b in cfg.sweep.batch_sizes), "sweep.batch_sizes must be positive"),
             (all(p in MODES for p in cfg.sweep.precisions),
              f"sweep.precisions: choose from {', '.join(PRECISIONS)}"),
             (cfg.sweep.noise_seeds >= 2, "sweep.noise_seeds must be 2 or more: the noise is seed-to-seed"),
             (bool(cfg.registry.model_name.strip()), "registry.model_name must not be empty"),
             (cfg.registry.unreachable_after_s >= 1, "registry.unreachable_after_s must be 1 or more"),
             *_validation_rules(cfg.validation), *_monitor_rules(cfg.monitor),
             (cfg.serving.check_rows >= 1 and cfg.serving.check_repeats >= 1,
              "serving.check_rows and serving.check_repeats must be 1 or more"),
             (cfg.serving.check_timeout_s > 0 and cfg.serving.predict_chunk_rows >= 1,
              "serving.check_timeout_s and serving.predict_chunk_rows must be positive"),
             (cfg.serving.predict_drift_rows >= 50, "serving.predict_drift_rows must be 50 or more"),
             (cfg.notify.timeout_s > 0, "notify.timeout_s must be positive")]
    for ok, message in rules:
        if not ok:
            raise ConfigError(f"config: {message}")


def _precision_rules(cfg: Config) -> list[tuple[bool, str]]:
    unknown = [p for p in cfg.precisions if p not in MODES]
    defaults = TrainConfig()
    scaler_set = [k for k in ("init_scale", "growth_interval") if getattr(cfg.train, k) != getattr(defaults, k)]
    uneven = [p for p in cfg.precisions if p in MODES and cfg.train.batch_size % MODES[p].row_multiple]
    return [
        (not uneven, f"train.batch_size {cfg.train.batch_size} is no multiple of {MODES[uneven[0]].row_multiple}, "
                     f"which {uneven[0]} needs for every batch" if uneven else ""),
        (bool(cfg.precisions), f"precisions is empty; give at least {BASELINE}"),
        (not unknown, f"unknown precision {unknown[0]!r}; choose from {', '.join(PRECISIONS)}" if unknown else ""),
        (BASELINE in cfg.precisions,
         f"precisions must include {BASELINE}: every candidate is gated against the {BASELINE} baseline"),
        (len(set(cfg.precisions)) == len(cfg.precisions), "precisions lists a precision twice"),
        (not scaler_set or any(MODES[p].loss_scaling for p in cfg.precisions if p in MODES),
         f"train.{scaler_set[0]} configures fp16's loss scaler, but the precisions ({','.join(cfg.precisions)}) "
         "have none; bf16 needs no loss scaling: drop it or add fp16" if scaler_set else ""),
    ]


def _train_rules(t: TrainConfig) -> list[tuple[bool, str]]:
    return [
        (t.hidden_size > 0, "train.hidden_size must be positive"),
        (t.hidden_layers >= 0, "train.hidden_layers must be 0 or more"),
        (t.epochs > 0, "train.epochs must be positive"),
        (t.batch_size > 0, "train.batch_size must be positive"),
        (t.lr > 0, "train.lr must be positive"),
        (t.warmup_steps >= 0, "train.warmup_steps must be 0 or more"),
        (t.scheduler in ("none", "cosine"), "train.scheduler must be none or cosine"),
        (t.model in MODEL_ZOO or ":" in t.model,
         f"train.model must be {', '.join(MODEL_ZOO)}, or a factory reference package.module:build "
         "or path/to/file.py:build"),
        (t.init_scale > 0 and t.growth_interval > 0, "train.init_scale and train.growth_interval must be positive"),
        (0.0 <= t.max_skipped_share <= 1.0, "train.max_skipped_share must be between 0 and 1"),
        (t.checkpoint_every >= 0, "train.checkpoint_every must be 0 or more"),
        (t.system_metrics_s >= 0, "train.system_metrics_s must be 0 or more"),
        (t.device in ("auto", "cpu") or t.device.startswith("cuda"), "train.device must be auto, cpu or cuda[:N]"),
    ]


def _gate_rules(g: GateConfig, precisions: tuple[str, ...]) -> list[tuple[bool, str]]:
    shares = ("min_accuracy", "accuracy_tolerance", "macro_f1_tolerance", "precision_tolerance", "recall_tolerance",
              "relative_tolerance", "mcnemar_alpha", "min_agreement", "max_prob_diff", "max_class_recall_drop",
              "max_ece_increase", "max_brier_increase", "max_fgsm_drop", "max_skipped_share")
    return [
        (g.selection in SELECTIONS or g.selection in MODES,
         f"gate.selection must be {', '.join(SELECTIONS)} or a precision name"),
        (g.selection in SELECTIONS or g.selection in precisions,
         f"gate.selection is {g.selection} but precisions ({','.join(precisions)}) do not train it"),
        *[(0.0 <= getattr(g, k) <= 1.0, f"gate.{k} must be between 0 and 1") for k in shares],
        (0.5 <= g.ci_level < 1.0, "gate.ci_level must be in [0.5, 1)"),
        (g.bootstrap_samples >= 100, "gate.bootstrap_samples must be 100 or more"),
        (0.0 < g.power < 1.0, "gate.power must be between 0 and 1, both excluded"),
        (not g.require_power or g.mcnemar_alpha > 0,
         "gate.require_power needs gate.mcnemar_alpha above 0: the power is that of the McNemar test"),
        (g.fgsm_epsilon >= 0, "gate.fgsm_epsilon must be 0 or more"),
        (g.min_speedup > 0 and g.max_memory_ratio > 0 and g.max_latency_ratio > 0,
         "gate.min_speedup, gate.max_memory_ratio and gate.max_latency_ratio must be positive"),
        (g.latency_repeats >= 0, "gate.latency_repeats must be 0 or more"),
    ]


def _validation_rules(v: ValidationConfig) -> list[tuple[bool, str]]:
    return [
        (v.min_class_count >= 1, "validation.min_class_count must be 1 or more"),
        (v.max_imbalance_ratio >= 1.0, "validation.max_imbalance_ratio must be 1 or more"),
        *[(0.0 <= getattr(v, k) <= 1.0, f"validation.{k} must be between 0 and 1")
          for k in ("min_class_share", "max_test_overlap", "max_target_leakage", "max_label_error_rate")],
        (v.max_conflicting_rows >= 0, "validation.max_conflicting_rows must be 0 or more"),
        (v.label_error_max_rows >= 100, "validation.label_error_max_rows must be 100 or more"),
        (v.label_error_folds >= 2, "validation.label_error_folds must be 2 or more"),
        (0.0 < v.warn_fraction <= 1.0, "validation.warn_fraction must be in (0, 1]"),
        (v.min_image_side >= 1, "validation.min_image_side must be 1 or more"),
    ]


def _monitor_rules(m: MonitorConfig) -> list[tuple[bool, str]]:
    return [
        (bool(m.experiment.strip()), "monitor.experiment must not be empty"),
        (m.psi_bins >= 2, "monitor.psi_bins must be 2 or more"),
        (m.reference_sample >= 50, "monitor.reference_sample must be 50 or more"),
        (m.psi_threshold >= 0, "monitor.psi_threshold must be 0 or more"),
        (0.0 < m.false_alarm_rate < 1.0, "monitor.false_alarm_rate must be between 0 and 1"),
        (0.0 < m.ks_alpha < 1.0, "monitor.ks_alpha must be between 0 and 1"),
        *[(0.0 <= getattr(m, k) <= 1.0, f"monitor.{k} must be between 0 and 1")
          for k in ("max_drifted_share", "max_accuracy_drop", "max_agreement_drop", "max_estimated_accuracy_drop",
                    "max_calibration_error")],
        (m.max_prediction_psi >= 0, "monitor.max_prediction_psi must be 0 or more"),
        (m.max_fp16_overflow >= 0, "monitor.max_fp16_overflow must be 0 or more"),
        (m.plot_top_k >= 0, "monitor.plot_top_k must be 0 or more"),
    ]
