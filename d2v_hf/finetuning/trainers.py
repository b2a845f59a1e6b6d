"""
Trainer subclasses of the fine-tuning scripts: [`ClassificationTrainer`] (GLUE, images, audio) and
[`QuestionAnsweringTrainer`] (SQuAD/XQuAD, as transformers' `examples/.../trainer_qa.py`). Both keep the model card
the script wrote when `push_to_hub` runs.

Evaluation of a QA model cannot be done feature by feature: the start/end logits of all the windows of an example
must be gathered, mapped back to the context and compared with the gold answers of the example. So `evaluate` and
`predict` take the raw examples next to the features and run a `post_process_function` before `compute_metrics`.

```python
>>> from d2v_hf.finetuning import QuestionAnsweringTrainer, make_qa_post_processing_function as post
>>> from d2v_hf.finetuning import make_squad_compute_metrics
>>> trainer = QuestionAnsweringTrainer(
...     model=model, args=training_args, train_dataset=train_features, eval_dataset=eval_features,
...     eval_examples=eval_examples, processing_class=tokenizer,
...     post_process_function=post(), compute_metrics=make_squad_compute_metrics(),
... )
>>> trainer.evaluate()  # {"eval_exact_match": ..., "eval_f1": ..., "eval_runtime": ...}
```
"""

import math
import time

from transformers import Trainer
from transformers.trainer_utils import PredictionOutput, speed_metrics

from ..modelcard import KeepModelCardMixin
from ..trainer.checkpointing import AtomicCheckpointMixin


class ClassificationTrainer(AtomicCheckpointMixin, KeepModelCardMixin, Trainer):
    """
    The [`~transformers.Trainer`] of the classification scripts (GLUE, images, audio): evaluation and prediction
    batches are collated with `eval_data_collator` when given (e.g. [`AudioClassificationCollator`] with
    `train=False`: clips cut at their start instead of random windows), training batches with `data_collator`; the
    model card the script wrote is kept ([`~d2v_hf.modelcard.KeepModelCardMixin`]).
    """

    def __init__(self, *args, eval_data_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator

    def _with_eval_collator(self, build, dataset):
        train_collator = self.data_collator
        self.data_collator = self.eval_data_collator or train_collator
        try:
            return build(dataset)
        finally:
            self.data_collator = train_collator

    def get_eval_dataloader(self, eval_dataset=None):
        return self._with_eval_collator(super().get_eval_dataloader, eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._with_eval_collator(super().get_test_dataloader, test_dataset)


class QuestionAnsweringTrainer(AtomicCheckpointMixin, KeepModelCardMixin, Trainer):
    """
    [`~transformers.Trainer`] whose `evaluate`/`predict` post-process predictions over raw examples.

    Args:
        eval_examples (`datasets.Dataset`, *optional*):
            The raw examples behind `eval_dataset` (the features).
        post_process_function (`Callable`, *optional*):
            `post_process_function(examples, features, predictions, stage) -> EvalPrediction`, for instance
            [`~d2v_hf.finetuning.make_qa_post_processing_function`]. Without it (or without `compute_metrics`) only the
            loss and speed metrics are returned.
        *args, **kwargs: passed to [`~transformers.Trainer`].
    """

    def __init__(self, *args, eval_examples=None, post_process_function=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_examples = eval_examples
        self.post_process_function = post_process_function

    def _predict_features(self, dataloader, description, ignore_keys, metric_key_prefix):
        # Metrics need the examples, so the loop must not call compute_metrics on the features itself.
        compute_metrics = self.compute_metrics
        self.compute_metrics = None
        start_time = time.time()
        try:
            output = self.evaluation_loop(
                dataloader,
                description=description,
                # No point gathering the predictions if there are no metrics, otherwise defer to prediction_loss_only.
                prediction_loss_only=True if compute_metrics is None else None,
                ignore_keys=ignore_keys,
                metric_key_prefix=metric_key_prefix,
            )
        finally:
            self.compute_metrics = compute_metrics
        total_batch_size = self.args.eval_batch_size * self.args.world_size
        if f"{metric_key_prefix}_model_preparation_time" in output.metrics:
            start_time += output.metrics[f"{metric_key_prefix}_model_preparation_time"]
        output.metrics.update(
            speed_metrics(
                metric_key_prefix,
                start_time,
                num_samples=output.num_samples,
                num_steps=math.ceil(output.num_samples / total_batch_size),
            )
        )
        return output

    @staticmethod
    def _prefix(metrics: dict, metric_key_prefix: str) -> dict:
        return {
            (key if key.startswith(f"{metric_key_prefix}_") else f"{metric_key_prefix}_{key}"): value
            for key, value in metrics.items()
        }

    def evaluate(self, eval_dataset=None, eval_examples=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """
        Evaluates on `eval_dataset` (features) and `eval_examples`; the metrics are prefixed with
        `metric_key_prefix + "_"` (`eval_exact_match`, `eval_f1`, ...).
        """
        eval_dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        eval_examples = self.eval_examples if eval_examples is None else eval_examples
        if eval_dataset is None:
            raise ValueError("QuestionAnsweringTrainer.evaluate needs an eval_dataset (the tokenized features).")
        self._memory_tracker.start()
        eval_dataloader = self.get_eval_dataloader(eval_dataset)
        output = self._predict_features(eval_dataloader, "Evaluation", ignore_keys, metric_key_prefix)

        if self.post_process_function is not None and self.compute_metrics is not None and self.args.should_save:
            if eval_examples is None:
                raise ValueError("QuestionAnsweringTrainer.evaluate needs eval_examples to compute QA metrics.")
            # Only the main process post-processes and scores (predictions are gathered on every process).
            # The prefix doubles as the post-processing stage, so predictions files of several evaluations coexist.
            eval_preds = self.post_process_function(eval_examples, eval_dataset, output.predictions, metric_key_prefix)
            metrics = self._prefix(self.compute_metrics(eval_preds), metric_key_prefix)
            metrics.update(output.metrics)
        else:
            metrics = output.metrics

        if self.args.should_log:
            self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        return metrics

    def predict(self, predict_dataset, predict_examples, ignore_keys=None, metric_key_prefix: str = "test"):
        """
        Predicts on `predict_dataset` (features); with a post-processing function and `compute_metrics`, returns a
        `PredictionOutput` whose `predictions` are the formatted answers and `metrics` are prefixed with
        `metric_key_prefix + "_"`.
        """
        predict_dataloader = self.get_test_dataloader(predict_dataset)
        output = self._predict_features(predict_dataloader, "Prediction", ignore_keys, metric_key_prefix)
        if self.post_process_function is None or self.compute_metrics is None:
            return output
        predictions = self.post_process_function(predict_examples, predict_dataset, output.predictions, "predict")
        metrics = self._prefix(self.compute_metrics(predictions), metric_key_prefix)
        metrics.update(output.metrics)
        return PredictionOutput(predictions=predictions.predictions, label_ids=predictions.label_ids, metrics=metrics)


__all__ = ["ClassificationTrainer", "QuestionAnsweringTrainer"]
