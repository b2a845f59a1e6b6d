"""d2v_hf: data2vec self-supervised pretraining for Hugging Face Transformers."""

__version__ = "0.1.0"
