"""d2v_hf: data2vec self-supervised pretraining for Hugging Face Transformers."""

from .configuration_data2vec_pretraining import Data2VecPretrainingConfig
from .ema import ema_update_, get_annealed_rate
from .finetuning import (
    GLUE_TASKS,
    apply_lora,
    check_model_modality,
    detect_modality,
    disable_loss_kwargs,
    load_glue_datasets,
    merge_and_save,
    task_to_keys,
)
from .masking import (
    audio_frame_attention_mask,
    audio_frame_lengths,
    audio_receptive_field,
    compute_audio_span_mask,
    compute_text_bert_mask,
    compute_text_span_mask,
    compute_vision_block_mask,
)
from .metrics import (
    glue_compute_metrics,
    make_glue_compute_metrics,
    make_squad_compute_metrics,
    squad_v1_compute_metrics,
    squad_v2_compute_metrics,
)
from .modelcard import build_model_card, save_model_card
from .modeling_data2vec_pretraining import Data2VecForPretraining, Data2VecForPretrainingOutput, Data2VecRegressionHead
from .qa_utils import (
    load_squad_json,
    postprocess_qa_predictions,
    prepare_train_features,
    prepare_validation_features,
    select_parallel_articles,
    split_by_article,
)
from .tokenization import build_default_corpus, train_bpe_tokenizer
from .trainer import (
    Data2VecCollapseError,
    Data2VecPretrainingArguments,
    Data2VecPretrainingTrainer,
    QuestionAnsweringTrainer,
)


__version__ = "0.1.0"

__all__ = [
    "GLUE_TASKS",
    "Data2VecCollapseError",
    "Data2VecPretrainingArguments",
    "Data2VecPretrainingTrainer",
    "QuestionAnsweringTrainer",
    "apply_lora",
    "build_default_corpus",
    "build_model_card",
    "check_model_modality",
    "detect_modality",
    "disable_loss_kwargs",
    "glue_compute_metrics",
    "load_glue_datasets",
    "load_squad_json",
    "make_glue_compute_metrics",
    "make_squad_compute_metrics",
    "merge_and_save",
    "postprocess_qa_predictions",
    "prepare_train_features",
    "prepare_validation_features",
    "save_model_card",
    "select_parallel_articles",
    "split_by_article",
    "squad_v1_compute_metrics",
    "squad_v2_compute_metrics",
    "task_to_keys",
    "train_bpe_tokenizer",
    "Data2VecForPretraining",
    "Data2VecForPretrainingOutput",
    "Data2VecPretrainingConfig",
    "Data2VecRegressionHead",
    "audio_frame_attention_mask",
    "audio_frame_lengths",
    "audio_receptive_field",
    "compute_audio_span_mask",
    "compute_text_bert_mask",
    "compute_text_span_mask",
    "compute_vision_block_mask",
    "ema_update_",
    "get_annealed_rate",
]
