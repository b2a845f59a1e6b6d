"""Configuration of [`Data2VecForPretraining`]: the data2vec 1.0 recipe around a Hugging Face Data2Vec backbone."""

import copy
import math
import typing

from transformers import (
    AutoConfig,
    PreTrainedConfig,
)
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import logging

from .backbone_registry import get_family, modality_of
from .recipes import _PRESETS, _PRESETS_V2, _VISION_V2_BACKBONE, base_backbone_config, tiny_backbone_config


logger = logging.get_logger(__name__)
TARGET_FEATURES = ("ffn", "block")
TEXT_MASK_STRATEGIES = ("span", "bert")
LOSS_CHANNEL_REDUCTIONS = ("sum", "mean")
MODES = ("data2vec", "data2vec2")
TEACHER_DTYPES = ("float32", "bfloat16", "float16")
DATA2VEC2_MODALITIES = ("text", "audio", "vision")


def image_side(backbone_config) -> int:
    """The side of a vision backbone's square input: `image_size` is an int or a `(height, width)` pair."""
    size = backbone_config.image_size
    return size if isinstance(size, int) else size[0]


class Data2VecPretrainingConfig(PreTrainedConfig):
    r"""
    Configuration of [`Data2VecForPretraining`]: a Transformers encoder (text, audio or vision) trained with the
    data2vec 1.0 objective (https://huggingface.co/papers/2202.03555) or 2.0 (`mode="data2vec2"`). The backbone
    configuration is nested and survives `save_pretrained` / `from_pretrained`. Use
    [`~Data2VecPretrainingConfig.from_preset`] for the paper's base recipes.

    Args:
        backbone_config (`PreTrainedConfig` or `dict`):
            Configuration of the student (and teacher) backbone, of any family in the backbone registry
            (`d2v_hf.backbone_registry.BACKBONES`: the three Data2Vec families, `bert`, `roberta`, `xlm-roberta`,
            `vit`, `deit`, `beit`, `wav2vec2`, `hubert`, `wavlm`). Its family decides `modality`.
        average_top_k_layers (`int`, *optional*, defaults to 8):
            Number K of top teacher layers whose (normalised) outputs are averaged into the targets.
        target_feature (`str`, *optional*, defaults to `"ffn"`):
            Per-layer feature: `"ffn"` is the feed-forward output before the last residual connection (and before
            the post-LN of text/audio; before layer scale `lambda_2` for vision), `"block"` the block output.
        instance_norm_target_layer (`bool`, *optional*, defaults to `False`):
            Instance-normalise each layer's feature over time, per channel and sequence (no affine), before averaging.
        layer_norm_target_layer (`bool`, *optional*, defaults to `False`):
            Parameter-free LayerNorm of each layer's feature over channels before averaging.
        instance_norm_targets (`bool`, *optional*, defaults to `False`):
            Instance norm of the averaged targets (applied after `layer_norm_targets`).
        layer_norm_targets (`bool`, *optional*, defaults to `False`):
            Parameter-free LayerNorm of the averaged targets.
        head_layers (`int`, *optional*, defaults to 1):
            Regression head depth: 1 is `Linear(D, D)`, 2 is `Linear(D, 2D) -> GELU -> Linear(2D, D)`.
        loss_beta (`float`, *optional*, defaults to 0.0):
            0 gives the L2 loss; > 0 the smooth L1 loss with this beta.
        loss_scale (`float`, *optional*):
            Multiplier of the per-position loss; `None` means `1 / sqrt(hidden_size)`.
        loss_channel_reduction (`str`, *optional*, defaults to `"sum"`):
            How the element-wise loss is reduced over channels at each masked position: `"sum"` (fairseq) or
            `"mean"` (the BEiT-based vision code, whose `reduction="mean"` averages over positions and channels).
        ema_decay (`float`, *optional*, defaults to 0.999):
            Teacher EMA decay tau_0 at step 0.
        ema_end_decay (`float`, *optional*, defaults to 0.9999):
            Teacher EMA decay tau_e reached at `ema_anneal_end_step` (linear ramp), constant afterwards.
        ema_anneal_end_step (`int`, *optional*, defaults to 30000):
            Number of optimizer steps of the linear ramp from `ema_decay` to `ema_end_decay`.
        teacher_shared_params (`list[str]`, *optional*, defaults to `[]`):
            Backbone parameter-name prefixes that the teacher shares with the student: they are copied from the
            student at every EMA step instead of being averaged (fairseq's `ema_transformer_layers_only`).
        zero_token_type_embeddings (`bool`, *optional*, defaults to `False`):
            Text only: the backbone's `token_type_embeddings` (Transformers' segment embeddings, one vector added to
            every token of a pretraining row) start at zero and are not trained, as fairseq's data2vec, which has
            none (the text presets set it). A student loaded from a pretrained encoder keeps its own values, frozen.
        text_mask_strategy (`str`, *optional*, defaults to `"span"`):
            Text only: `"span"` (released recipe: spans of `mask_length` tokens, all replaced by `<mask>`) or
            `"bert"` (paper's main row: `mask_prob` of tokens, 80% `<mask>`, 10% random, 10% unchanged).
        mask_prob (`float`, *optional*, defaults to 0.65):
            Text/audio masking probability (span start probability times span length, as in fairseq).
        mask_length (`int`, *optional*, defaults to 10):
            Text/audio span length.
        mask_random_token_prob (`float`, *optional*, defaults to 0.1):
            BERT masking: fraction of selected tokens replaced by a random token.
        mask_leave_unmasked_prob (`float`, *optional*, defaults to 0.1):
            BERT masking: fraction of selected tokens left unchanged (still scored).
        mask_token_id (`int`, *optional*):
            Text only: the tokenizer's `<mask>` id, placed at masked positions of the student input.
        num_mask_patches (`int`, *optional*, defaults to 120):
            Vision: number of patches masked by BEiT block-wise masking (120 of 196 at 224px / 16).
        min_mask_patches_per_block (`int`, *optional*, defaults to 16):
            Vision: minimum size of one masked block.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of the regression head.
        mode (`str`, *optional*, defaults to `"data2vec"`):
            `"data2vec"` (1.0: the student sees the whole masked input, `head` is the regression head) or
            `"data2vec2"` (2.0, https://huggingface.co/papers/2212.07525: `clone_batch` masked copies per sample
            share one teacher pass, the student encodes only the unmasked tokens / frames / patches and `head` is a
            convolutional decoder, 1-D for text and audio, 2-D over the patch grid for images).
            `from_preset(modality, mode="data2vec2")` gives the 2.0 base recipe. Images need a backbone without
            relative position bias (absolute positions instead), which the vision preset sets.
        clone_batch (`int`, *optional*, defaults to 1):
            2.0 only: number M of masked copies of each sample (the collator returns `M * batch_size` mask rows).
        decoder_dim (`int`, *optional*):
            2.0 only: channels of the decoder convolutions; `None` means the backbone's `hidden_size`.
        decoder_kernel (`int`, *optional*, defaults to 9):
            2.0 only: kernel size of each decoder convolution (odd, "same" padding).
        decoder_layers (`int`, *optional*, defaults to 5):
            2.0 only: number of `Conv -> LayerNorm (no affine) -> GELU` decoder blocks.
        decoder_groups (`int`, *optional*, defaults to 1):
            2.0 only: groups of the decoder convolutions (must divide `hidden_size` and `decoder_dim`).
        decoder_residual (`bool`, *optional*, defaults to `True`):
            2.0 only: add each block's input to its output when the shapes match (the text recipe has none).
        decoder_projection_layers (`int`, *optional*, defaults to 1):
            2.0 only: the decoder's output projection, `Linear(decoder_dim, D)` or, with 2, `Linear(decoder_dim,
            2 * decoder_dim) -> GELU -> Linear(2 * decoder_dim, D)`.
        decoder_input_dropout (`float`, *optional*, defaults to 0.1):
            2.0 only: dropout on the encoder outputs before they are scattered into the decoder input.
        mask_noise_std (`float`, *optional*, defaults to 0.01):
            2.0 only: masked positions of the decoder input are filled with `N(0, mask_noise_std**2)` noise.
        mask_prob_adjust (`float`, *optional*, defaults to 0.0):
            2.0 audio and images: extra fraction of block centres of the (inverse) block masking (`mask_prob` is the
            masked fraction, `mask_length` the block length / side).
        cls_loss (`float`, *optional*, defaults to 0.0):
            2.0 images only (the preset: 0.01): weight of the global loss in which the student's CLS output
            regresses the mean over patches of the teacher targets, once per masked copy. It is added to the
            per-position loss as `cls_loss * sum(CLS squared error * loss scale)`, which equals fairseq's
            `cls_loss * sample_size` factor after its division by `sample_size`.

    Parameters of speed (no effect on the recipe beyond rounding):
        teacher_dtype (`str`, *optional*, defaults to `"float32"`):
            Storage dtype of the teacher: `"bfloat16"` (or `"float16"`) keeps a low-precision copy that the EMA step
            refreshes from an fp32 master (fairseq's `ema_fp32`; saved as `ema_fp32.safetensors` in checkpoints),
            so that a bf16-autocast step does not cast the teacher's weights at every forward; its targets differ
            from an fp32 teacher's by bf16 rounding (the targets are normalised and averaged in fp32).
        fused_head_loss (`bool`, *optional*, defaults to `False`):
            data2vec 1.0: run the regression head and the loss at every position and weight the loss by the mask,
            instead of gathering the masked positions first. The loss and its gradients are the same (up to
            summation order); the step has no data-dependent shape, so `torch.compile` traces it as one graph and
            fuses the loss into the head, at the cost of the head on unmasked positions (a `D x D` linear layer: about
            1% of a base step). The output then has no `predictions` / `targets` (they would be every position's).

    Parameters of the collapse guard:
        min_target_var (`float`, *optional*, defaults to 0.1):
            Training stops when the mean per-channel std of the targets falls under this (fairseq's defaults; the
            presets use each released recipe's value: 0.1 for audio 1.0 and 2.0 text/audio, 0 (no guard) for text
            1.0, vision 1.0 and 2.0 images). `Data2VecPretrainingArguments.min_target_var` overrides it.
        min_pred_var (`float`, *optional*, defaults to 0.01):
            The same for the predictions (0.01 where the guard is on, else 0).

    Example:

    ```python
    >>> from d2v_hf import Data2VecPretrainingConfig, Data2VecForPretraining

    >>> config = Data2VecPretrainingConfig.from_preset("audio")
    >>> config.modality
    'audio'
    >>> model = Data2VecForPretraining(config)
    ```
    """

    model_type = "data2vec-pretraining"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="data2vec-text")}

    backbone_config: PreTrainedConfig | dict | None = None
    # Parameters that control the targets
    average_top_k_layers: int = 8
    target_feature: str = "ffn"
    instance_norm_target_layer: bool = False
    layer_norm_target_layer: bool = False
    instance_norm_targets: bool = False
    layer_norm_targets: bool = False
    # Parameters that control the head and the loss
    head_layers: int = 1
    loss_beta: float = 0.0
    loss_scale: float | None = None
    loss_channel_reduction: str = "sum"
    # Parameters that control the teacher
    ema_decay: float = 0.999
    ema_end_decay: float = 0.9999
    ema_anneal_end_step: int = 30_000
    teacher_shared_params: list[str] | None = None
    zero_token_type_embeddings: bool = False
    # Parameters that control masking
    text_mask_strategy: str = "span"
    mask_prob: float = 0.65
    mask_length: int = 10
    mask_random_token_prob: float = 0.1
    mask_leave_unmasked_prob: float = 0.1
    mask_token_id: int | None = None
    num_mask_patches: int = 120
    min_mask_patches_per_block: int = 16
    initializer_range: float = 0.02
    # Parameters of data2vec 2.0 (mode="data2vec2")
    mode: str = "data2vec"
    clone_batch: int = 1
    decoder_dim: int | None = None
    decoder_kernel: int = 9
    decoder_layers: int = 5
    decoder_groups: int = 1
    decoder_residual: bool = True
    decoder_projection_layers: int = 1
    decoder_input_dropout: float = 0.1
    mask_noise_std: float = 0.01
    mask_prob_adjust: float = 0.0
    cls_loss: float = 0.0
    # Parameters of the collapse guard (read by the trainer unless its arguments set them)
    min_target_var: float = 0.1
    min_pred_var: float = 0.01
    # Parameters of speed
    teacher_dtype: str = "float32"
    fused_head_loss: bool = False

    def __post_init__(self, **kwargs):
        if self.backbone_config is None:
            raise ValueError(
                "Data2VecPretrainingConfig needs a `backbone_config` (e.g. RobertaConfig, HubertConfig, ViTConfig); "
                "use `Data2VecPretrainingConfig.from_preset(modality)` for the base recipes."
            )
        if isinstance(self.backbone_config, dict):
            get_family(self.backbone_config.get("model_type"))  # an unknown family: the error lists the known ones
        if self.teacher_shared_params is None:
            self.teacher_shared_params = []
        super().__post_init__(**kwargs)
        self._check_backbone()
        self.validate_recipe()
        if self.modality == "text":  # the Trainer compares these with the tokenizer's and warns when they differ
            for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
                if getattr(self, name, None) is None:
                    setattr(self, name, getattr(self.backbone_config, name, None))

    def _check_backbone(self):
        family = get_family(getattr(self.backbone_config, "model_type", None))
        backbone = self.backbone_config
        if self.modality == "vision":
            if image_side(backbone) % backbone.patch_size != 0:
                raise ValueError(
                    f"image_size {backbone.image_size} is not divisible by patch_size {backbone.patch_size}."
                )
            # (families whose mask token is a constructor argument get it when the backbone is built)
            if not family.mask_token_argument and not backbone.use_mask_token:
                # the student replaces masked patches with the backbone's learned mask token
                logger.info("Setting backbone_config.use_mask_token=True: the student needs a learned mask token.")
                backbone.use_mask_token = True
        if self.modality == "audio":
            # HF creates `masked_spec_embed` (the learned mask vector) only when mask_time_prob > 0, and ignores
            # given masks when apply_spec_augment is False
            if not backbone.mask_time_prob > 0:
                logger.info("Setting backbone_config.mask_time_prob=0.05 so that the learned mask embedding exists.")
                backbone.mask_time_prob = 0.05
            if getattr(backbone, "apply_spec_augment", True) is False:
                raise ValueError("backbone_config.apply_spec_augment=False would make the student ignore the mask.")
            if backbone.mask_feature_prob > 0:
                raise ValueError(
                    f"backbone_config.mask_feature_prob={backbone.mask_feature_prob}: channel masking is not part of "
                    "data2vec pretraining; set it to 0."
                )

    @property
    def modality(self) -> str:
        """`"text"`, `"audio"` or `"vision"`, the modality of the backbone's family."""
        return modality_of(self.backbone_config.model_type)

    @property
    def hidden_size(self) -> int:
        return self.backbone_config.hidden_size

    @property
    def effective_loss_scale(self) -> float:
        return self.loss_scale if self.loss_scale is not None else 1.0 / math.sqrt(self.hidden_size)

    def _check_types(self):
        """Every number and flag of the recipe has its annotated type (`int` fields also take whole floats)."""
        accepted = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}
        for name, annotation in type(self).__annotations__.items():
            kinds = [kind for kind in (typing.get_args(annotation) or (annotation,)) if kind is not type(None)]
            value = getattr(self, name, None)
            if value is None or len(kinds) != 1 or kinds[0] not in accepted:
                continue
            expected = accepted[kinds[0]]
            if kinds[0] is int and isinstance(value, float) and value.is_integer():
                setattr(self, name, int(value))
            elif not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
                raise ValueError(f"{name}={value!r} must be {' or '.join(kind.__name__ for kind in expected)}.")

    def validate_recipe(self):
        """Raises a `ValueError` naming the first invalid field."""
        self._check_types()
        num_layers = self.backbone_config.num_hidden_layers
        if not 1 <= self.average_top_k_layers <= num_layers:
            raise ValueError(
                f"average_top_k_layers={self.average_top_k_layers} must be between 1 and the backbone's "
                f"num_hidden_layers={num_layers}."
            )
        if self.target_feature not in TARGET_FEATURES:
            raise ValueError(f"target_feature={self.target_feature!r}; expected one of {TARGET_FEATURES}.")
        if self.loss_channel_reduction not in LOSS_CHANNEL_REDUCTIONS:
            raise ValueError(
                f"loss_channel_reduction={self.loss_channel_reduction!r}; expected one of {LOSS_CHANNEL_REDUCTIONS}."
            )
        if self.text_mask_strategy not in TEXT_MASK_STRATEGIES:
            raise ValueError(f"text_mask_strategy={self.text_mask_strategy!r}; expected {TEXT_MASK_STRATEGIES}.")
        if self.head_layers < 1:
            raise ValueError(f"head_layers={self.head_layers} must be >= 1.")
        if self.loss_beta < 0:
            raise ValueError(f"loss_beta={self.loss_beta} must be >= 0 (0 selects the L2 loss).")
        if self.loss_scale is not None and self.loss_scale <= 0:
            raise ValueError(f"loss_scale={self.loss_scale} must be > 0, or None for 1/sqrt(hidden_size).")
        for name in ("ema_decay", "ema_end_decay", "mask_prob", "mask_random_token_prob", "mask_leave_unmasked_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must be in [0, 1].")
        if self.ema_anneal_end_step < 0:
            raise ValueError(f"ema_anneal_end_step={self.ema_anneal_end_step} must be >= 0.")
        if self.mask_length < 1:
            raise ValueError(f"mask_length={self.mask_length} must be >= 1.")
        if (
            self.zero_token_type_embeddings
            and get_family(self.backbone_config.model_type).token_type_embeddings is None
        ):
            raise ValueError(
                f"zero_token_type_embeddings=True is for text backbones with segment embeddings; this backbone is "
                f"{self.backbone_config.model_type}."
            )
        if self.modality == "vision" and self.mode == "data2vec":  # BEiT block masks: data2vec 1.0 only
            backbone = self.backbone_config
            num_patches = (image_side(backbone) // backbone.patch_size) ** 2
            if not 1 <= self.min_mask_patches_per_block <= self.num_mask_patches <= num_patches:
                raise ValueError(
                    f"Need 1 <= min_mask_patches_per_block ({self.min_mask_patches_per_block}) <= num_mask_patches "
                    f"({self.num_mask_patches}) <= number of patches ({num_patches})."
                )
        if self.modality == "text" and self.mask_token_id is not None:
            if not 0 <= self.mask_token_id < self.backbone_config.vocab_size:
                raise ValueError(
                    f"mask_token_id={self.mask_token_id} is outside the vocabulary "
                    f"(vocab_size={self.backbone_config.vocab_size})."
                )
        if self.teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(f"teacher_dtype={self.teacher_dtype!r}; expected one of {TEACHER_DTYPES}.")
        if self.fused_head_loss and self.mode == "data2vec2":
            raise ValueError(
                "fused_head_loss=True is a data2vec 1.0 lever; mode='data2vec2' predicts with its decoder at the "
                "masked positions of each copy (set fused_head_loss=False)."
            )
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}; expected one of {MODES}.")
        if self.mode == "data2vec2":
            self._validate_data2vec2()

    def _validate_data2vec2(self):
        if self.modality not in DATA2VEC2_MODALITIES:
            raise ValueError(
                f"mode='data2vec2' is implemented for {DATA2VEC2_MODALITIES} only; this backbone is {self.modality}."
            )
        refusal = get_family(self.backbone_config.model_type).data2vec2_refusal
        if refusal:
            raise ValueError(
                f"mode='data2vec2' cannot run on a {self.backbone_config.model_type} backbone: {refusal}. Use "
                "mode='data2vec' (1.0), which sees every position."
            )
        for name in ("clone_batch", "decoder_layers", "decoder_groups", "decoder_projection_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1.")
        if not isinstance(self.decoder_kernel, int) or self.decoder_kernel < 1 or self.decoder_kernel % 2 == 0:
            raise ValueError(f"decoder_kernel={self.decoder_kernel!r} must be an odd integer >= 1.")
        decoder_dim = self.hidden_size if self.decoder_dim is None else self.decoder_dim
        if not isinstance(decoder_dim, int) or decoder_dim < 1:
            raise ValueError(f"decoder_dim={self.decoder_dim!r} must be an integer >= 1 (or None for hidden_size).")
        if decoder_dim % self.decoder_groups or self.hidden_size % self.decoder_groups:
            raise ValueError(
                f"decoder_groups={self.decoder_groups} must divide decoder_dim={decoder_dim} and "
                f"hidden_size={self.hidden_size}."
            )
        if self.mask_noise_std < 0:
            raise ValueError(f"mask_noise_std={self.mask_noise_std} must be >= 0.")
        if not isinstance(self.cls_loss, (int, float)) or self.cls_loss < 0:
            raise ValueError(f"cls_loss={self.cls_loss!r} must be a number >= 0.")
        if self.cls_loss and self.modality != "vision":
            raise ValueError(
                f"cls_loss={self.cls_loss} is for images (a CLS token); this backbone is {self.modality}."
            )
        if not 0.0 <= self.decoder_input_dropout < 1.0:
            raise ValueError(f"decoder_input_dropout={self.decoder_input_dropout} must be in [0, 1).")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob={self.mask_prob} must be in (0, 1) for data2vec 2.0 masking.")
        if self.modality == "vision":
            for name, value in _VISION_V2_BACKBONE.items():
                if name.startswith("use_") and getattr(self.backbone_config, name, value) != value:
                    raise ValueError(
                        f"backbone_config.{name}={getattr(self.backbone_config, name)}: the data2vec 2.0 student "
                        f"encodes only the visible patches, which needs {name}={value}."
                    )

    @classmethod
    def from_preset(cls, modality: str, backbone_config: PreTrainedConfig | None = None, **overrides):
        r"""
        The data2vec 1.0 base recipe of a modality (the reference's summary table; released code where it differs
        from the paper, except for the two released bugs, see `docs/faithfulness.md`).

        - **text** (`data2vec_text`, RoBERTa-base): K=10 top layers of the FFN output (before the last residual
          and the post-LN), parameter-free LayerNorm per layer, no final norm; head `Linear(768,1536)-GELU-
          Linear(1536,768)` (`head_layers=2`); smooth L1 with beta=4 summed over channels, `loss_scale=1`; EMA
          0.999 -> 0.9999 over 300,000 updates (the paper says 100,000); embeddings (token, position, LayerNorm)
          shared with the student; span masking p=0.35, length 4, all `<mask>` (about 31% of tokens);
          `mask_token_id=50264` for the default RoBERTa vocabulary.
        - **audio** (`data2vec_audio`, wav2vec 2.0 base): K=8, FFN output, instance norm over time per layer, no
          final norm; head `Linear(768,768)`; L2 summed over channels times 1/sqrt(768) (`loss_scale=None`); EMA
          0.999 -> 0.9999 over 30,000 updates; CNN feature encoder, feature projection, positional convolution and
          mask embedding shared; span masking p=0.65, length 10 over 20 ms frames (about 49% before trimming);
          backbone LayerDrop 0.05.
        - **vision** (BEiT-based data2vec_vision code, ViT-B/16): K=6, block outputs (`'end'`), LayerNorm per layer
          and a final LayerNorm of the average; head `Linear(768,768)`; smooth L1 with beta=2 and a mean over
          positions and channels (`loss_channel_reduction="mean"`, `loss_scale=1`); constant EMA 0.9998; the whole
          backbone is averaged (no sharing); BEiT block masking of 120 of 196 patches, at least 16 per block;
          backbone with shared relative position bias, layer scale 1e-4, drop-path 0.25, attention dropout 0.05.

        With `mode="data2vec2"` in `overrides` the data2vec 2.0 base recipe is used instead. Text:
        M=8 masked copies per sample (`clone_batch`), random masking of exactly 48% of the tokens, K=12 FFN outputs
        instance-normalised over time, no final norm, L2 loss with `loss_scale=1`, a decoder of 5 `Conv1d(k=9)`
        blocks (`decoder_dim` = hidden size, no residual) with a 2-layer projection, EMA 0.9999 -> 0.99999 over
        100,000 updates, embeddings shared with the student. For images: M=16 inverse block masks (80% masked,
        visible blocks of 3 x 3, adjust 0.07), K=10 FFN outputs, instance norm per layer and a final LayerNorm, L2
        loss times 1/sqrt(D), a decoder of 6 `Conv2d(k=3, groups=16)` blocks with residuals over the patch grid,
        EMA 0.9998 -> 0.99999 over 100,000 updates, nothing shared; the backbone gets absolute positions instead of
        relative position bias, no layer scale, no dropout or drop-path; the global CLS loss with weight 0.01.
        Audio: M=8 block masks (exactly 50% of the frames, spans of 5, adjust 0.05), K=8 FFN outputs with instance
        norm per layer, L2 loss times 1/sqrt(D), a decoder of 4 `Conv1d(k=7, groups=16)` blocks of `hidden_size / 2`
        channels with residuals, EMA 0.999 -> 0.99999 over 75,000 updates, CNN and feature projection shared (the
        positional convolution is averaged; fairseq's ALiBi attention bias has no HF counterpart and is left out).

        Args:
            modality (`str`): `"text"`, `"audio"` or `"vision"`.
            backbone_config (`PreTrainedConfig`, *optional*):
                The backbone, of any registered family of the modality (e.g. a `RobertaConfig` for text, a
                `HubertConfig` for audio, a `ViTConfig` for vision); defaults to the base (12 x 768) Data2Vec
                architecture of the modality. The recipe's fields apply to it unchanged (the registry maps the
                parameters the teacher shares, which have the same names in every registered family).
            overrides: any field of this configuration, applied on top of the preset.
        """
        if modality not in _PRESETS:
            raise ValueError(f"Unknown modality {modality!r}; expected one of {sorted(_PRESETS)}.")
        presets = _PRESETS_V2 if overrides.get("mode") == "data2vec2" else _PRESETS
        if modality not in presets:
            raise ValueError(f"mode='data2vec2' has no {modality!r} preset; available: {sorted(presets)}.")
        if backbone_config is None:
            backbone_config = base_backbone_config(modality)
        elif get_family(getattr(backbone_config, "model_type", None)).modality != modality:
            raise ValueError(
                f"from_preset({modality!r}) got a {type(backbone_config).__name__}, a "
                f"{modality_of(backbone_config.model_type)} backbone; expected a {modality} backbone configuration."
            )
        backbone_config = copy.deepcopy(backbone_config)
        if presets is _PRESETS_V2 and modality == "vision":
            for name, value in _VISION_V2_BACKBONE.items():
                if hasattr(backbone_config, name):  # e.g. ViT has no relative position bias or layer scale to turn off
                    setattr(backbone_config, name, value)
        fields = copy.deepcopy(presets[modality])
        if presets is _PRESETS_V2 and modality == "audio":
            fields["decoder_dim"] = backbone_config.hidden_size // 2
        if modality == "text" and backbone_config.vocab_size == 50265:
            fields["mask_token_id"] = 50264
        fields.update(overrides)
        return cls(backbone_config=backbone_config, **fields)


__all__ = ["Data2VecPretrainingConfig", "base_backbone_config", "image_side", "tiny_backbone_config"]
