"""Fine-tuning settings, owned by the train stage (the seed's deep-text-recognition-benchmark options)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from synth.effect_settings import EffectsSettings

ATTN_REFUSED = ("train.model.prediction is Attn: EasyOCR cannot run an attention decoder (its recognizer "
                "decodes CTC output only: greedy, beam search or word beam search), so there is no EasyOCR export for "
                "it; read with `hwocr evaluate`, or train a CTC model to use EasyOCR")


class ModelSettings(BaseModel):
    """The benchmark's module choices (its --Transformation ... --hidden_size); the defaults are the seed's pick,
    None-VGG-BiLSTM-CTC at EasyOCR's generation-2 sizes (korean_g2, english_g2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transformation: Literal["None", "TPS"] = Field(
        "None", description="None, or TPS (RARE's thin-plate-spline rectification; resamples every input to "
        "img_h x img_w)."
    )
    feature_extraction: Literal["VGG", "RCNN", "ResNet"] = Field(
        "VGG", description="VGG (CRNN's), RCNN (GRCNN's gated recurrent convolutions) or ResNet (FAN's)."
    )
    sequence_modeling: Literal["None", "BiLSTM"] = Field("BiLSTM", description="None or BiLSTM (two layers).")
    prediction: Literal["CTC", "Attn"] = Field(
        "CTC", description="CTC, or Attn (attention decoder over batch_max_length + 1 steps; EasyOCR cannot run "
        "it, so export is skipped)."
    )
    num_fiducial: int = Field(20, ge=4, le=64, multiple_of=2, description="TPS fiducial points (--num_fiducial): "
                              "an even number from 4 to 64.")
    input_channel: int = Field(1, ge=1, le=1, description="Input channels (--input_channel): 1, as hwocr reads "
                               "grayscale (the benchmark's 3 goes with its --rgb).")
    output_channel: PositiveInt = Field(256, description="Feature channels (--output_channel).")
    hidden_size: PositiveInt = Field(256, description="LSTM hidden size (--hidden_size).")

    @property
    def name(self) -> str:
        """The benchmark's name of the combination, e.g. None-VGG-BiLSTM-CTC."""
        return f"{self.transformation}-{self.feature_extraction}-{self.sequence_modeling}-{self.prediction}"

    @model_validator(mode="after")
    def _check(self) -> ModelSettings:
        step = 16 if self.feature_extraction == "ResNet" else 8
        if self.output_channel % step:
            raise ValueError(f"train.model.output_channel {self.output_channel} must be a multiple of {step} for "
                             f"{self.feature_extraction} (its stages use output_channel/{step} channels)")
        return self


# Peak memory of a training step per input pixel of the batch, forward, backward and Adam's state of
# None-VGG-BiLSTM-CTC on CPU in fp32: 980 to 1,360 bytes measured at 64x256 and 80x400, batches 16 to 64.
TRAIN_BYTES_PER_PIXEL = 1200
MAX_LOADER_WORKERS_PER_CORE = 4  # a loader worker is a process with its own copy of the decoding state


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelSettings = Field(
        default_factory=ModelSettings, description="The network: the benchmark's module choices and sizes."
    )
    pretrained: str = Field(
        "korean_g2",
        description="Starting weights: korean_g2 (~/.EasyOCR/model, else EasyOCR's release, md5-checked), "
        "a local path or URL, or none.",
    )
    source_charset: str | None = Field(
        None, description="Character set of the pretrained checkpoint when it differs from charset."
    )
    charset: str = Field("korean_g2", description="Character set to train: a built-in name or a file.")
    batch_max_length: PositiveInt = Field(25, description="Longest label; longer samples are dropped and counted.")
    img_h: PositiveInt = Field(80, description="Input height (--imgH).")
    img_w: PositiveInt = Field(100, description="Input width (--imgW) of the pad and stretch modes.")
    preprocess: Literal["easyocr", "pad", "stretch"] = Field(
        "easyocr", description="easyocr: each word at its natural width, as EasyOCR's recognize reads it (height "
        "img_h, padded to ceil(width/height) * img_h; batches grouped by width); pad: keep the ratio within img_w, "
        "squashing wider words (the seed's); stretch: resize to img_w x img_h (the benchmark's default)."
    )
    max_width: PositiveInt = Field(
        800, description="easyocr mode: widest network input in pixels; wider samples are dropped and counted "
        "(too_wide)."
    )
    batch_ratio: list[PositiveFloat] = Field(
        default_factory=lambda: [1.0], description="Share of each training LMDB in a batch (--batch_ratio)."
    )
    optimizer: Literal["adadelta", "adam"] = Field("adadelta", description="Adadelta (the seed's default) or Adam.")
    lr: PositiveFloat = Field(1.0, description="Learning rate (--lr).")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant (the seed's) or cosine: lr decays to 0 over the run, its progress the "
        "larger of iterations/num_iter and minutes/max_minutes, so a time budget ends at a low lr too."
    )
    rho: float = Field(0.95, gt=0, lt=1, description="Adadelta rho.")
    eps: PositiveFloat = Field(1e-8, description="Adadelta eps.")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam beta1.")
    grad_clip: PositiveFloat = Field(5.0, description="Gradient-norm clip (--grad_clip).")
    batch_size: PositiveInt = Field(192, description="Batch size (--batch_size).")
    num_iter: PositiveInt = Field(4000, description="Iterations to train (--num_iter).")
    max_minutes: float = Field(0, ge=0, description="Stop after this many minutes of training (0: no limit).")
    val_interval: PositiveInt = Field(2000, description="Validate and checkpoint every this many iterations.")
    init: Literal["kaiming", "pytorch"] = Field(
        "kaiming", description="Weights before any pretrained file loads: kaiming (the benchmark's: Kaiming-normal "
        "weights, zero biases) or pytorch (the layers' defaults, far slower to leave CTC's plateau from scratch)."
    )
    seed: int = Field(1111, description="Seed of weights init and data order (--manualSeed).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: fp16 AMP on CUDA; on CPU bf16 autocast where the CPU has AVX512-BF16 or AMX "
        "(2 to 3 times fp32), else fp32 (bf16 is then emulated, about 20 times slower; training warns)."
    )
    threads: NonNegativeInt = Field(0, description="CPU threads for torch per process (0: the cores shared out).")
    processes: PositiveInt = Field(
        1, description="Data-parallel processes (torchrun, DDP; one per GPU). The global batch stays batch_size."
    )
    channels_last: bool = Field(True, description="channels_last memory format for the convolutions.")
    loader_workers: NonNegativeInt | Literal["auto"] = Field(
        "auto", description="Processes that decode, augment and collate batches ahead (0: in the training "
        "process). auto: min(8, cores per process - 1) on CUDA; 0 on CPU, where workers take cores from the step."
    )
    compile: bool = Field(
        False, description="torch.compile the network (the first steps compile it; each new input width in the "
        "easyocr mode compiles again)."
    )
    augment: EffectsSettings = Field(
        default_factory=EffectsSettings,
        description="Training-time augmentation: render effects applied to training images as batches are drawn, "
        "seeded by (seed, epoch, sample), so repeated epochs see new variants. All off by default.",
    )
    ema_decay: float = Field(
        0, ge=0, lt=1, description="Validate, keep and export an exponential moving average of the weights, each "
        "step decaying it by min(ema_decay, (1 + t) / (10 + t)) at iteration t (0: off; 0.999 averages about the "
        "last thousand steps). Validation scores the raw weights too (raw_valid_loss, raw_accuracy, raw_norm_ed "
        "in the history and MLflow), so a run measures what the average gives."
    )
    recompute_layers: NonNegativeInt = Field(
        0, le=20, description="Leading VGG modules (conv, ReLU, pool...) whose activations backward recomputes: "
        "less peak memory for a little compute."
    )

    freeze: list[Literal["feature_extraction", "sequence_modeling"]] = Field(
        default_factory=list, description="Stages not trained (EasyOCR's trainer's FT options): feature_extraction "
        "(VGG) and/or sequence_modeling (BiLSTM); the head always trains."
    )
    freeze_iterations: NonNegativeInt = Field(
        0, description="Iterations the freeze lasts, then everything trains (0: the whole run)."
    )
    early_stop_patience: NonNegativeInt = Field(
        0, description="Stop after this many validations without a better early_stop_metric (0: never)."
    )
    early_stop_metric: Literal["accuracy", "norm_ed"] = Field(
        "accuracy", description="Validation metric early stopping watches."
    )

    def peak_bytes(self) -> int:
        """An estimate of the peak memory of a step: its widest batch (every word as wide as max_width, in the easyocr
        mode) at TRAIN_BYTES_PER_PIXEL."""
        width = self.max_width if self.preprocess == "easyocr" else self.img_w
        return TRAIN_BYTES_PER_PIXEL * self.img_h * width * self.batch_size

    def check_machine(self, cores: int, memory: int) -> None:
        """Sizes this machine cannot hold are refused before anything allocates, with the estimate."""
        from hwocr.errors import HwocrError, gib

        need = self.peak_bytes()
        if need > memory:
            width = f"up to {self.max_width} px wide" if self.preprocess == "easyocr" else f"{self.img_w} px wide"
            raise HwocrError(f"train.batch_size {self.batch_size:,} at train.img_h {self.img_h} ({width}) needs about "
                             f"{gib(need)} of memory for a training step ({TRAIN_BYTES_PER_PIXEL} bytes a pixel), and "
                             f"this machine has {gib(memory)}: lower train.batch_size (or train.max_width)")
        if self.loader_workers != "auto" and self.loader_workers > MAX_LOADER_WORKERS_PER_CORE * cores:
            raise HwocrError(f"train.loader_workers {self.loader_workers:,}: each is a process, and this machine has "
                             f"{cores} cores; at most {MAX_LOADER_WORKERS_PER_CORE * cores}")

    @model_validator(mode="after")
    def _check(self) -> TrainSettings:
        if self.freeze and self.processes > 1:
            raise ValueError("train.freeze is not supported with processes > 1 (DDP needs every parameter to train)")
        if "sequence_modeling" in self.freeze and self.model.sequence_modeling == "None":
            raise ValueError("train.freeze names sequence_modeling, but train.model.sequence_modeling is None")
        if self.recompute_layers and self.model.feature_extraction == "ResNet":
            raise ValueError("train.recompute_layers works on VGG and RCNN, whose ConvNet is a sequence of modules; "
                             "not on ResNet")
        if abs(sum(self.batch_ratio) - 1) > 1e-6:
            raise ValueError(f"batch_ratio must sum to 1, got {self.batch_ratio}")
        return self
