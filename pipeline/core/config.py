"""The typed configuration: one frozen dataclass per section. Plain data; reading it touches no device.

pipeline.core.config_load reads YAML and overrides into it and validates it once, at the entry.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pipeline.core.modes import DEFAULT_CANDIDATES

MODEL_ZOO = ("mlp", "cnn", "transformer")


@dataclass(frozen=True)
class DataConfig:
    path: str = "data"
    label_column: str = "label"
    test_size: float = 0.2
    split_seed: int = 0
    # Text (or integer-coded) columns to one-hot encode (pipeline/core/encoding.py); any other
    # non-numeric feature column fails validation by name.
    categorical_columns: tuple[str, ...] = ()
    # Image folders (root/<class>/*.png|jpg): every image is resized to [height, width] and
    # converted to 1 (grayscale) or 3 (RGB) channels; the network sees C*H*W values in C,H,W order.
    image_size: tuple[int, ...] = (28, 28)
    image_channels: int = 1


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
    # Image folders: whether images of different sizes or colour modes may be mixed (all are resized
    # and converted to data.image_size and data.image_channels either way); false fails validation.
    image_mixed_sizes: bool = True
    image_mixed_modes: bool = True
    min_image_side: int = 8  # an image smaller than this on either side fails validation
    # GE's Data Docs page of the validation (data_docs.html); false writes the report's JSON there instead.
    # Rendering costs about half a second on the bundled digits (bench/overhead.py).
    data_docs: bool = True


@dataclass(frozen=True)
class TrainConfig:
    # 64 -> 1024 -> 1024 -> 1024 -> 10 at batch 512: big enough that the matmuls dominate a step, so
    # the precision of those matmuls is what the throughput measures (bench/precision_speedup.py).
    # mlp, cnn (features as a square image), transformer (image rows as tokens), or a factory of the
    # user's own: package.module:build or path/to/file.py:build (pipeline/core/factory.py)
    model: str = "mlp"
    model_params: dict[str, Any] = field(default_factory=dict)  # passed to a factory as its `params`
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
    """Each candidate against the fp32 baseline; pipeline/core/gate_checks.py names the check each value bounds."""

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
    # The report states the smallest drop each check catches this often (pipeline/core/power.py); a test
    # set whose McNemar test misses a drop of the accuracy tolerance more often warns, or fails with
    # require_power, naming the test size needed.
    power: float = 0.8
    require_power: bool = False
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
    # Seconds the MLflow client keeps retrying an unreachable tracking server before the run gives
    # up (exit 6); the trained models stay in train.checkpoint_dir for `mpops run --resume`.
    unreachable_after_s: float = 60.0


@dataclass(frozen=True)
class MonitorConfig:
    """Drift thresholds of `mpops monitor`; the reference they compare with is stored at registration."""

    experiment: str = "mpops-monitoring"  # one MLflow run per monitor call
    report_dir: str = "out/monitoring"  # drift report (CSV, Markdown, JSON, plots); relative to the project
    psi_bins: int = 10  # quantile bins of the training split (read at registration, stored in the reference)
    reference_sample: int = 2000  # training values kept per feature for the KS test (read at registration)
    # Share of unshifted batches, of any size, allowed to raise an alarm; the PSI cut-offs of features and
    # predictions are derived from the reference for each batch size to hold it.
    false_alarm_rate: float = 0.01
    psi_threshold: float = 0.1  # a feature drifts when its PSI passes its cut-off and this floor ...
    ks_alpha: float = 0.01  # ... and its KS p-value is below this alpha divided by the number of features
    max_drifted_share: float = 0.0  # the batch drifts when more features than this share drift (0: any one)
    max_prediction_psi: float = 0.1  # floor under the calibrated cut-off of the predicted class shares' PSI
    max_estimated_accuracy_drop: float = 0.05  # registered accuracy minus the estimate without labels
    max_calibration_error: float = 0.05  # above this (held-out, after calibration) the estimate is untrusted
    max_accuracy_drop: float = 0.05  # batches with labels: registered test accuracy minus batch accuracy
    max_agreement_drop: float = 0.02  # champion vs its fp32 twin: agreement at registration minus on the batch
    max_fp16_overflow: int = 0  # feature values with |x| > 65504, which fp16 cannot hold
    plot_top_k: int = 6  # per-feature plots: the drifted ones plus this many more by PSI
    keep_drifted: bool = True  # copy a drifted batch under keep_dir/YYYY-MM-DD/ and pin it with DVC
    keep_dir: str = "incoming/drifted"  # relative to the project; --retrain trains on its labelled batches too


@dataclass(frozen=True)
class NotifyConfig:
    """One message per gate failure, drift and champion change."""

    # An Apprise URL (slack://, mailto://, json://, ...) or a plain http(s):// URL, which gets a JSON POST.
    # Empty: no message. Never logged: such URLs often carry a token.
    webhook_url: str = ""
    timeout_s: float = 5.0  # a notification never holds a run longer than this


@dataclass(frozen=True)
class ServingConfig:
    """The servability check before `champion` moves, and batch scoring (`mpops predict`)."""

    check: bool = True  # load the new version in a fresh process and compare its predictions before promoting
    check_rows: int = 256  # test rows the fresh process scores (the input example too)
    check_repeats: int = 20  # timed calls at batch 1 and at batch 64
    check_timeout_s: float = 120.0  # the fresh process is stopped, and the check failed, past this
    predict_chunk_rows: int = 50000  # `mpops predict` reads, scores and writes this many rows at a time
    predict_drift_rows: int = 20000  # a uniform sample of this many scored rows goes to the drift monitor


@dataclass(frozen=True)
class Config:
    precisions: tuple[str, ...] = DEFAULT_CANDIDATES
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)

    def as_flat_dict(self) -> dict[str, Any]:
        """Dotted keys (`train.lr`) for MLflow params."""
        out: dict[str, Any] = {"precisions": ",".join(self.precisions)}
        for f in fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                for k, v in dataclasses.asdict(section).items():
                    if isinstance(v, dict):  # train.model_params.width, not one param holding a mapping
                        out.update({f"{f.name}.{k}.{key}": value for key, value in v.items()})
                    else:
                        out[f"{f.name}.{k}"] = v
        out["notify.webhook_url"] = "set" if self.notify.webhook_url else ""
        return out


def with_data_path(cfg: Config, path: str) -> Config:
    return replace(cfg, data=replace(cfg.data, path=path))
