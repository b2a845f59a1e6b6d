"""
data2vec 1.0 (https://huggingface.co/papers/2202.03555) as a Transformers model: a student backbone regresses, at
masked positions, the average of the top-K normalised layer outputs of an EMA teacher that sees the unmasked input.
"""

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, PreTrainedModel
from transformers.utils import ModelOutput

from .backbones import (
    INPUT_NAME,
    POSITION_NAME,
    build_backbone,
    check_inputs,
    check_mask,
    check_teacher_shared_params,
    encoder_layers,
    export_backbone,
    family_of,
    init_beit_backbone,
    num_output_positions,
    packed_text_inputs,
    prefix_tokens,
    target_modules,
)
from .configuration_data2vec_pretraining import Data2VecPretrainingConfig
from .ema import check_decay, ema_update_, gathered_parameters, get_annealed_rate, split_shared_parameters
from .modeling_data2vec2 import Data2Vec2Decoder, data2vec2_predictions, init_data2vec2_image_backbone


@dataclass
class Data2VecForPretrainingOutput(ModelOutput):
    """
    Output of [`Data2VecForPretraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`):
            Regression loss averaged over the masked positions of this batch (the trainer re-normalises by the
            masked positions of the whole optimizer step), plus the global CLS term of 2.0 images (`cls_loss`).
        predictions (`torch.FloatTensor` of shape `(num_masked, hidden_size)`):
            Regression-head outputs of the student at the masked positions.
        targets (`torch.FloatTensor` of shape `(num_masked, hidden_size)`):
            Teacher targets at the masked positions (fp32, no gradient).
        target_var (`torch.FloatTensor` of shape `()`):
            Mean over channels of the per-channel std of `targets` (the collapse monitor of fairseq).
        prediction_var (`torch.FloatTensor` of shape `()`):
            The same statistic for `predictions`.
        num_masked (`torch.LongTensor` of shape `()`):
            Number of masked positions in the batch.
    """

    loss: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None
    targets: torch.FloatTensor | None = None
    target_var: torch.FloatTensor | None = None
    prediction_var: torch.FloatTensor | None = None
    num_masked: torch.LongTensor | None = None


class Data2VecRegressionHead(nn.Module):
    """fairseq's regression head: `Linear(D, D)`, or `Linear(D, 2D) -> GELU -> ... -> Linear(2D, D)`."""

    def __init__(self, hidden_size: int, num_layers: int):
        super().__init__()
        layers, dim = [], hidden_size
        for i in range(num_layers - 1):
            next_dim = hidden_size * 2 if i == 0 else dim
            layers += [nn.Linear(dim, next_dim), nn.GELU()]
            dim = next_dim
        layers.append(nn.Linear(dim, hidden_size))
        self.layers = nn.Sequential(*layers)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden_states)


def instance_norm_over_time(x: torch.Tensor, padding: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Normalises each channel over time within each sequence (`F.instance_norm` on (B, C, T)), real steps only."""
    if padding is None:
        return F.instance_norm(x.transpose(1, 2), eps=eps).transpose(1, 2)
    valid = padding.unsqueeze(-1).to(x.dtype)
    count = valid.sum(1, keepdim=True).clamp(min=1)
    mean = (x * valid).sum(1, keepdim=True) / count
    var = ((x - mean).square() * valid).sum(1, keepdim=True) / count
    return (x - mean) / torch.sqrt(var + eps)


def feature_std(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """
    fairseq's `compute_var`: mean over channels of the per-channel std over positions; with `mask` (bool, `x`'s
    leading dims), over the positions where it is True, computed without gathering them (no data-dependent shape).
    """
    if mask is None:
        if x.shape[0] < 2:
            return x.new_zeros(())
        return torch.sqrt(x.float().var(dim=0) + 1e-6).mean()
    x, weights, positions = x.float(), mask.unsqueeze(-1).to(torch.float32), tuple(range(mask.dim()))
    count = weights.sum()
    mean = (x * weights).sum(positions) / count.clamp(min=1)
    var = ((x - mean).square() * weights).sum(positions) / (count - 1).clamp(min=1)
    return torch.where(count >= 2, torch.sqrt(var + 1e-6).mean(), 0.0)


def average_layer_targets(features: list[torch.Tensor], config, padding: torch.Tensor | None = None) -> torch.Tensor:
    """
    The data2vec targets from the teacher's top-K layer features `(batch, seq, hidden)` each (paper Sec. 3.3): each
    normalised as the config says, averaged, then optionally normalised again; fp32. `padding` (bool, True where
    real) keeps padded positions out of the instance-norm statistics.
    """
    target = 0
    for feature in features:
        feature = feature.float()
        if config.instance_norm_target_layer:
            feature = instance_norm_over_time(feature, padding)
        if config.layer_norm_target_layer:
            feature = F.layer_norm(feature, feature.shape[-1:])
        target = target + feature
    target = target / len(features)
    if config.layer_norm_targets:
        target = F.layer_norm(target, target.shape[-1:])
    if config.instance_norm_targets:
        target = instance_norm_over_time(target, padding)
    return target


class TargetFeatureTap:
    """
    The forward hook that records the teacher's per-layer target features. It is registered once, on the target
    module of every layer, and records only while [`Data2VecForPretraining.compute_targets`] runs: hooks registered and
    removed at every call would break the graph of `torch.compile` (and recompile it), persistent ones are traced.
    Each module keeps its own feature, in a one-element list set at registration: a list shared by the layers would
    make torch.compile guard on its length, so that layers compiled one by one (regional compilation) recompile at
    each; and a list rather than the tensor itself because accelerate's `compile_regions` compiles shallow copies of
    the layers, which call the same hook on themselves and share the list but not a plain attribute.
    """

    slot = "_d2v_target_feature"

    def __init__(self):
        self.recording = False
        self.modules: list[nn.Module] = []

    def attach(self, modules: list[nn.Module]) -> list:
        """Hooks the tap on `modules` (in layer order); returns the hook handles."""
        self.modules = list(modules)
        for module in self.modules:
            setattr(module, self.slot, [None])
        return [module.register_forward_hook(self) for module in self.modules]

    def __call__(self, module, args, output):
        if self.recording:
            getattr(module, self.slot)[0] = output[0] if isinstance(output, tuple) else output

    def collect(self) -> list:
        """The features recorded since the last call, in layer order (`None` for a layer that recorded none)."""
        features = [getattr(module, self.slot)[0] for module in self.modules]
        for module in self.modules:
            getattr(module, self.slot)[0] = None
        return features


class Data2VecForPretraining(PreTrainedModel):
    r"""
    data2vec 1.0 (and, with `config.mode="data2vec2"`, 2.0) pretraining around any Transformers encoder of the
    backbone registry (the Data2Vec families, BERT, RoBERTa, XLM-R, ViT, DeiT, BEiT, wav2vec 2.0, HuBERT, WavLM):
    `student` (the backbone being trained, of the family's own class), `teacher` (a frozen EMA copy, always in eval
    mode, never given gradients) and `head` (the regression head, or the 2.0 decoder).

    Example:

    ```python
    >>> import torch
    >>> from d2v_hf import Data2VecForPretraining, Data2VecPretrainingConfig, compute_text_span_mask

    >>> model = Data2VecForPretraining(Data2VecPretrainingConfig.from_preset("text"))
    >>> input_ids = torch.randint(5, 50000, (2, 64))
    >>> attention_mask = torch.ones_like(input_ids)
    >>> mask = compute_text_span_mask(attention_mask)
    >>> out = model(input_ids=input_ids, attention_mask=attention_mask, mask=mask)
    >>> out.loss.backward()
    >>> model.ema_step()  # once per optimizer step
    ```
    """

    config_class = Data2VecPretrainingConfig
    config: Data2VecPretrainingConfig
    base_model_prefix = "student"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _keys_to_ignore_on_load_unexpected = [r".*relative_position_index.*"]

    def __init__(self, config: Data2VecPretrainingConfig):
        super().__init__(config)
        self.modality = config.modality
        self.main_input_name = INPUT_NAME[self.modality]
        self.student = build_backbone(config.backbone_config)
        self.teacher = build_backbone(config.backbone_config)
        check_teacher_shared_params(self.student, config.teacher_shared_params)
        if config.mode == "data2vec2":  # data2vec 2.0: the convolutional decoder takes the regression head's place
            self.head = Data2Vec2Decoder(config)
        else:
            self.head = Data2VecRegressionHead(config.hidden_size, config.head_layers)
        # the number of EMA steps taken so far; saved with the weights so that a resumed run continues the schedule
        self.register_buffer("ema_num_updates", torch.zeros((), dtype=torch.long))
        self._ema_fp32_master = None
        self._ema_fp32_master_checked = False
        self._target_tap, self._target_tap_key, self._target_tap_handles = TargetFeatureTap(), None, []
        self.post_init()
        # the unit FSDP wraps (accelerate's TRANSFORMER_BASED_WRAP reads it): the family's layer class only, so that
        # the student's and the teacher's layers are wrapped alike. Set after `post_init`, which would add the
        # backbone's own list (with its embeddings class: accelerate then wraps the embeddings and fails to wrap the
        # input embeddings inside them, which it wraps on its own)
        self._no_split_modules = {type(encoder_layers(self.student)[0]).__name__}
        if self.modality == "vision":
            # the released image recipes' own initialisation (the Hugging Face one zeroes CLS and mask tokens)
            if config.mode == "data2vec2":
                init_data2vec2_image_backbone(self.student, self.teacher)
            else:
                init_beit_backbone(self.student)
        if config.zero_token_type_embeddings:
            # fairseq's data2vec text has no segment embeddings: a zero vector that is never trained stands for none
            segments = self.student.get_submodule(family_of(self.student).token_type_embeddings)
            nn.init.zeros_(segments.weight)
            segments.weight.requires_grad_(False)
        # the teacher starts as an exact copy of the student (fairseq deep-copies the student)
        with torch.no_grad():
            for teacher_tensor, student_tensor in zip(
                self.teacher.state_dict().values(), self.student.state_dict().values()
            ):
                teacher_tensor.copy_(student_tensor)
        # there is no backpropagation through the teacher, so no need for gradients
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        if config.teacher_dtype != "float32":
            # a low-precision teacher (no weight casts under autocast); the EMA averages into an fp32 master, which
            # starts from the exact fp32 copy rather than from the rounded teacher
            averaged, _ = split_shared_parameters(self.teacher, self.student, config.teacher_shared_params)
            self._ema_fp32_master = [student.detach().float().clone() for _, student in averaged]
            self.teacher.to(getattr(torch, config.teacher_dtype))
        self._teacher_feature_tap()  # here rather than at the first step, which torch.compile may be tracing

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            nn.init.zeros_(module.bias)

    def train(self, mode: bool = True):
        super().train(mode)
        # no dropout, LayerDrop, drop-path or SpecAugment in the teacher, ever
        self.teacher.eval()
        return self

    def get_input_embeddings(self):
        """The student's input embeddings; `None` for a speech student, which has none (its feature encoder is a CNN):
        transformers raises there, which would stop accelerate's FSDP2 preparation (it asks every model)."""
        try:
            return self.student.get_input_embeddings()
        except NotImplementedError:
            return None

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_values: torch.FloatTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        mask: torch.BoolTensor | None = None,
        student_input_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_loss: bool = True,
        **kwargs,
    ) -> Data2VecForPretrainingOutput:
        r"""
        Args:
            input_ids / input_values / pixel_values:
                The ORIGINAL (unmasked) input of the config's modality; the teacher sees it as is.
            attention_mask (`torch.Tensor` of shape `(batch_size, seq_len)`, *optional*):
                1 for real tokens / audio samples, 0 for padding.
            mask (`torch.BoolTensor` of shape `(batch_size, num_positions)`):
                True where the student's input is masked: tokens, feature frames (after the CNN) or patches. With
                `config.mode="data2vec2"`: `(batch_size * clone_batch, num_positions)`, one row per masked copy
                (optional: drawn at random when omitted), see [`data2vec2_predictions`].
            student_input_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*):
                Text only: the corrupted student input (BERT 80/10/10 masking). Without it, every masked position
                gets `config.mask_token_id`. Every position of `mask` is scored either way (paper, fairseq#4229).
            position_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*):
                Text, data2vec 1.0: rows that pack several samples, the position of each token within its sample
                (0 where a sample starts; `tokenize_and_group(pack_documents=True)` makes them). Each token then
                attends only within its sample, in student and teacher alike, so the loss and targets are those of
                the samples padded one per row, without computing the padding.
            return_loss (`bool`, *optional*, defaults to `True`):
                Always computed; the argument tells [`~transformers.Trainer`] that evaluation yields a loss.
        """
        inputs = {"input_ids": input_ids, "input_values": input_values, "pixel_values": pixel_values}
        inputs.update({k: v for k, v in kwargs.items() if k in ("input_ids", "input_values", "pixel_values")})
        main_input, padding = check_inputs(self.config, {**inputs, "attention_mask": attention_mask})
        loss_mask = None  # set when the loss is taken over every position, weighted by the mask
        if self.config.mode == "data2vec2":
            if position_ids is not None:
                packed_text_inputs(self.config, main_input, position_ids, padding, "sdpa")  # raises: 1.0 text only
            # 1-3. data2vec 2.0: M masked copies, sparse student, conv decoder, one teacher pass per sample
            predictions, targets, mask, cls_loss = data2vec2_predictions(self, main_input, attention_mask, mask)
        else:
            cls_loss = None
            shape = (main_input.shape[0], num_output_positions(self.config, main_input))
            mask = check_mask(mask, shape, padding, POSITION_NAME[self.modality])

            backbone_attention, backbone_positions = attention_mask, None
            if position_ids is not None:  # packed samples: attention within each sample only, student and teacher
                backbone_attention, backbone_positions = packed_text_inputs(
                    self.config, main_input, position_ids, padding, self.student.config._attn_implementation
                )

            # 1. student forward on the masked input (mask token / learned mask embedding / mask token)
            hidden_states = self._student_forward(
                main_input, backbone_attention, mask, student_input_ids, backbone_positions
            )

            # 2. teacher targets on the unmasked input: average of the top-K normalised layers (paper Sec. 3.3)
            targets = self._teacher_targets(main_input, padding, backbone_attention, backbone_positions)

            # 3. regress the targets at the masked positions only
            if self.config.fused_head_loss:
                # head and loss at every position, the loss weighted by the mask: no gather, no data-dependent
                # shape, so torch.compile traces one graph and fuses the loss into the head's output
                predictions, loss_mask = self.head(hidden_states), mask
            else:
                predictions, targets = self.head(hidden_states[mask]), targets[mask]
        num_masked = mask.sum()
        loss = self.regression_loss(predictions, targets, loss_mask) / num_masked
        if cls_loss is not None:  # 2.0 images: the global CLS term (already weighted, see config.cls_loss)
            loss = loss + cls_loss

        # 4. collapse monitors
        with torch.no_grad():
            target_var, prediction_var = feature_std(targets, loss_mask), feature_std(predictions, loss_mask)
        gathered = loss_mask is None  # the fused path's tensors hold every position: not returned
        return Data2VecForPretrainingOutput(
            loss=loss,
            predictions=predictions if gathered else None,
            targets=targets if gathered else None,
            target_var=target_var,
            prediction_var=prediction_var,
            num_masked=num_masked,
        )

    def _student_forward(self, main_input, attention_mask, mask, student_input_ids, position_ids=None):
        if self.modality == "text":
            if student_input_ids is None:
                if self.config.mask_token_id is None:
                    raise ValueError("config.mask_token_id is None: set it to the tokenizer's `mask_token_id`.")
                student_input_ids = main_input.masked_fill(mask, self.config.mask_token_id)
            elif student_input_ids.shape != main_input.shape:
                raise ValueError(
                    f"student_input_ids has shape {tuple(student_input_ids.shape)}; input_ids has "
                    f"{tuple(main_input.shape)}."
                )
            return self.student(
                input_ids=student_input_ids, attention_mask=attention_mask, position_ids=position_ids
            ).last_hidden_state
        if self.modality == "audio":
            out = self.student(main_input, attention_mask=attention_mask, mask_time_indices=mask)
            return out.last_hidden_state
        # patches only: the CLS (and distillation) token is neither masked nor scored
        hidden_states = self.student(main_input, bool_masked_pos=mask).last_hidden_state
        return hidden_states[:, prefix_tokens(self.config.backbone_config) :]

    @torch.no_grad()
    def compute_targets(self, position_ids: torch.LongTensor | None = None, **unmasked_inputs) -> torch.FloatTensor:
        """
        Teacher targets at every position, `(batch, seq, hidden)` in fp32 (vision: patches only, no CLS): the
        chosen feature of each of the top K layers, normalised per layer, averaged, then optionally normalised again.
        `position_ids`: packed text samples, as in [`~Data2VecForPretraining.forward`].
        """
        main_input, padding = check_inputs(self.config, unmasked_inputs)
        attention_mask, backbone_positions = unmasked_inputs.get("attention_mask"), None
        if position_ids is not None:
            attention_mask, backbone_positions = packed_text_inputs(
                self.config, main_input, position_ids, padding, self.teacher.config._attn_implementation
            )
        return self._teacher_targets(main_input, padding, attention_mask, backbone_positions)

    @torch.no_grad()
    def _teacher_targets(self, main_input, padding, attention_mask, position_ids=None) -> torch.FloatTensor:
        """[`compute_targets`] on inputs already checked, with the backbone's own attention mask and positions."""
        config = self.config
        teacher_kwargs = {} if position_ids is None else {"position_ids": position_ids}
        tap = self._teacher_feature_tap()
        teacher_dtype = next(self.teacher.parameters()).dtype
        if main_input.is_floating_point() and main_input.dtype != teacher_dtype:  # audio / pixels into a bf16 teacher
            main_input = main_input.to(teacher_dtype)
        self.teacher.eval()
        tap.collect()  # what an interrupted call may have left
        tap.recording = True
        try:
            if self.modality == "vision":
                self.teacher(main_input)
            else:
                self.teacher(main_input, attention_mask=attention_mask, **teacher_kwargs)
        finally:
            tap.recording = False
        features = tap.collect()
        if any(feature is None for feature in features):
            # a compiled teacher that skipped the hooks would otherwise give wrong targets without a word
            missing = sum(feature is None for feature in features)
            raise RuntimeError(
                f"The teacher's target tap recorded nothing in {missing} of its {len(features)} layers: the teacher "
                "ran without its forward hooks (a torch.compile that drops them?). Run the teacher eagerly or "
                "compile the whole model (--torch_compile)."
            )
        features = features[-config.average_top_k_layers :]
        if self.modality == "vision":
            features = [feature[:, prefix_tokens(config.backbone_config) :] for feature in features]
        return average_layer_targets(features, config, padding)

    def _teacher_feature_tap(self) -> TargetFeatureTap:
        """
        The tap on the target module of every teacher layer (`compute_targets` keeps the top K), registered once
        (again only if `target_feature` changed). Every layer, not only the top K: layers compiled one by one
        (accelerate's regional compilation) share one compiled code, and dynamo does not tell a layer with a hook
        from one without, so a tap on some layers only would be lost on the others.
        """
        key = self.config.target_feature
        if self._target_tap_key != key:
            for handle in self._target_tap_handles:
                handle.remove()
            self._target_tap_handles = self._target_tap.attach(target_modules(self.teacher, key))
            self._target_tap_key = key
        return self._target_tap

    def regression_loss(
        self, predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """
        Sum over masked positions of the per-position loss (L2 or smooth L1, reduced over channels, scaled): over all
        rows of `predictions`, or, with `mask`, over the positions where it is True (the other rows count zero).
        """
        predictions = predictions.float()
        if self.config.loss_beta == 0:
            loss = F.mse_loss(predictions, targets, reduction="none")
        else:
            loss = F.smooth_l1_loss(predictions, targets, reduction="none", beta=self.config.loss_beta)
        loss = loss.sum(-1) if self.config.loss_channel_reduction == "sum" else loss.mean(-1)
        if mask is not None:  # `where`, not a product: padded positions may hold non-finite targets
            loss = torch.where(mask, loss, 0.0)
        return loss.sum() * self.config.effective_loss_scale

    def ema_decay_at(self, step: int | None = None) -> float:
        """
        The scheduled teacher decay of EMA update `step` (default: the next one, `ema_num_updates + 1`). Update k,
        the one after optimizer step k, uses the decay of step k, as fairseq's `set_num_updates(k)` does.
        """
        step = int(self.ema_num_updates) + 1 if step is None else step
        config = self.config
        return get_annealed_rate(config.ema_decay, config.ema_end_decay, step, config.ema_anneal_end_step)

    @torch.no_grad()
    def ema_step(self, decay: float | None = None) -> float:
        """
        One teacher update, once per optimizer step: `teacher <- decay * teacher + (1 - decay) * student` for the
        averaged parameters (fp32 arithmetic), a copy of the student for `config.teacher_shared_params` and buffers.
        `decay` defaults to the config's schedule at this update ([`ema_decay_at`]). Returns the decay used.

        Under FSDP2 each process updates its shard of the teacher from the same shard of the student. Under DeepSpeed
        ZeRO-3 both are gathered whole for the update and partitioned again (every process computes the same update;
        process 0's is kept), which costs one all-gather of both models per step.
        """
        decay = check_decay(self.ema_decay_at() if decay is None else decay)
        with gathered_parameters([self.student, self.teacher], modify=True):
            self._ema_update(decay)
        self.ema_num_updates += 1
        return decay

    def _ema_update(self, decay: float) -> None:
        averaged, shared = split_shared_parameters(self.teacher, self.student, self.config.teacher_shared_params)
        master = None
        if any(t.dtype != torch.float32 for t, _ in averaged):
            # a low-precision teacher keeps an fp32 shadow (fairseq's ema_fp32); checkpoints save it (the trainer)
            master = self._ema_fp32_master
            # no master yet, one built on meta tensors (from_pretrained builds the model there), or (checked at the
            # first step only) one that does not round to the teacher because weights were loaded after __init__
            stale = master is None or len(master) != len(averaged) or master[0].is_meta
            if not stale and not self._ema_fp32_master_checked:
                stale = any(not torch.equal(m.to(t.device, t.dtype), t) for m, (t, _) in zip(master, averaged))
            if stale:
                self._ema_fp32_master = [t.detach().float().clone() for t, _ in averaged]
            self._ema_fp32_master_checked = True
            device = averaged[0][0].device
            if self._ema_fp32_master[0].device != device:  # a plain list: `model.to(device)` does not move it
                self._ema_fp32_master = [m.to(device) for m in self._ema_fp32_master]
            master = self._ema_fp32_master
        ema_update_(averaged, shared, decay, fp32_master=master)

    def _averaged_teacher_names(self) -> list[str]:
        shared = self.config.teacher_shared_params
        return [name for name, _ in self.teacher.named_parameters() if not any(name.startswith(p) for p in shared)]

    def ema_fp32_state(self) -> dict[str, torch.Tensor]:
        """The fp32 shadow of a low-precision teacher (empty for an fp32 teacher), by teacher parameter name."""
        if self._ema_fp32_master is None or self._ema_fp32_master[0].is_meta:  # none yet (see ema_step)
            return {}
        return dict(zip(self._averaged_teacher_names(), self._ema_fp32_master))

    def load_ema_fp32_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restores the fp32 shadow saved by [`ema_fp32_state`] (a resumed low-precision teacher keeps it)."""
        names = self._averaged_teacher_names()
        if sorted(state) != sorted(names):
            raise ValueError(
                f"The saved EMA fp32 state holds {len(state)} tensors; this teacher averages {len(names)}."
            )
        device = next(self.teacher.parameters()).device
        self._ema_fp32_master = [state[name].to(device=device, dtype=torch.float32).clone() for name in names]
        self._ema_fp32_master_checked = True

    def export_student(
        self, save_directory: str | os.PathLike, state_dict: dict[str, torch.Tensor] | None = None, **save_kwargs
    ) -> None:
        """
        Writes the student as a plain checkpoint of its family's class (`Data2VecTextModel`, `RobertaModel`,
        `ViTModel`, `HubertModel`, ...), which that family's `AutoModel` and task heads
        (`...ForSequenceClassification`, `...ForImageClassification`, `...ForCTC`, ...) load. The student has no
        pooler (pretraining never trains one); the export carries the freshly initialised pooler that `AutoModel`
        builds (seeded, so exports are reproducible), so it loads with no missing weights. A student sharded by FSDP
        or DeepSpeed ZeRO-3 needs its gathered weights as `state_dict` (`trainer.student_state_dict()`).
        """
        export_backbone(self.student, state_dict).save_pretrained(save_directory, **save_kwargs)


AutoConfig.register("data2vec-pretraining", Data2VecPretrainingConfig, exist_ok=True)
AutoModel.register(Data2VecPretrainingConfig, Data2VecForPretraining, exist_ok=True)
AutoModelForPreTraining.register(Data2VecPretrainingConfig, Data2VecForPretraining, exist_ok=True)

__all__ = ["Data2VecForPretraining", "Data2VecForPretrainingOutput", "Data2VecRegressionHead", "average_layer_targets"]
