"""
d2v_hf: data2vec self-supervised pretraining (1.0 and 2.0) for Hugging Face Transformers.

The package is the method: configuration and presets, the model (student, EMA teacher, head, targets, loss), the
masks, the data collators, the EMA, the pretraining Trainer, and model cards. Two clearly named sub-packages sit
beside it: `d2v_hf.data` (local datasets, the BPE tokenizer, the embedded demo corpus) and `d2v_hf.finetuning`
(the logic the fine-tuning scripts in `examples/` share). See docs/architecture.md.
"""

from .configuration_data2vec_pretraining import Data2VecPretrainingConfig
from .data.default_corpus import build_default_corpus
from .data.tokenization import train_bpe_tokenizer
from .data_collator import (
    DataCollatorForData2Vec2Audio,
    DataCollatorForData2Vec2Text,
    DataCollatorForData2Vec2Vision,
    DataCollatorForData2VecAudio,
    DataCollatorForData2VecText,
    DataCollatorForData2VecVision,
    data_collator_for,
)
from .ema import ema_update_, get_annealed_rate
from .masking import (
    audio_frame_attention_mask,
    audio_frame_lengths,
    audio_receptive_field,
    compute_audio_span_mask,
    compute_text_bert_mask,
    compute_text_span_mask,
    compute_vision_block_mask,
)
from .masking_data2vec2 import compute_block_mask_1d, compute_inverse_block_mask, compute_random_mask
from .modelcard import build_model_card, save_model_card
from .modeling_data2vec_pretraining import Data2VecForPretraining, Data2VecForPretrainingOutput, Data2VecRegressionHead
from .trainer import (
    Data2VecCollapseError,
    Data2VecNonFiniteLossError,
    Data2VecPretrainingArguments,
    Data2VecPretrainingTrainer,
    EMATeacherCallback,
)


__version__ = "0.1.0"

__all__ = [
    "Data2VecCollapseError",
    "Data2VecForPretraining",
    "Data2VecForPretrainingOutput",
    "Data2VecNonFiniteLossError",
    "Data2VecPretrainingArguments",
    "Data2VecPretrainingConfig",
    "Data2VecPretrainingTrainer",
    "Data2VecRegressionHead",
    "DataCollatorForData2Vec2Audio",
    "DataCollatorForData2Vec2Text",
    "DataCollatorForData2Vec2Vision",
    "DataCollatorForData2VecAudio",
    "DataCollatorForData2VecText",
    "DataCollatorForData2VecVision",
    "EMATeacherCallback",
    "audio_frame_attention_mask",
    "audio_frame_lengths",
    "audio_receptive_field",
    "build_default_corpus",
    "build_model_card",
    "compute_audio_span_mask",
    "compute_block_mask_1d",
    "compute_inverse_block_mask",
    "compute_random_mask",
    "compute_text_bert_mask",
    "compute_text_span_mask",
    "compute_vision_block_mask",
    "data_collator_for",
    "ema_update_",
    "get_annealed_rate",
    "save_model_card",
    "train_bpe_tokenizer",
]
