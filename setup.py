"""Packaging for d2v_hf: data2vec pretraining and fine-tuning on top of Hugging Face Transformers."""

from setuptools import find_packages, setup


install_requires = [
    # torch is listed without an upper bound; install the CPU wheel first on CPU machines (see README.md)
    "torch>=2.4",
    "transformers>=5.0,<6",
    "accelerate>=1.0",
    "datasets>=3.0",
    "evaluate>=0.4",
    "peft>=0.13",
    "safetensors>=0.4",
    "huggingface_hub>=1.0",
    "jinja2",  # huggingface_hub.ModelCard.from_template renders the card template
    "tokenizers>=0.20",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "soundfile",
    "pillow",
    "matplotlib",
    "tensorboardX",  # the Trainer's TensorBoard logs (report_to="tensorboard") without the tensorboard server
    "tqdm",
]

extras = {
    "deepspeed": ["deepspeed>=0.16"],  # ZeRO-2 / ZeRO-3 (examples/accelerate_configs); runs on CPU for the tests
    "quality": ["ruff>=0.6"],
}
# pytest-xdist: the tests run single-threaded, so two workers (-n 2) use both cores of the 2-core CI machine
extras["test"] = ["pytest>=8", "pytest-timeout", "pytest-xdist>=3.2"] + extras["deepspeed"]
extras["dev"] = extras["test"] + extras["quality"]

setup(
    name="d2v_hf",
    version="0.1.0",
    description="data2vec self-supervised pretraining (text, speech, images) for Hugging Face Transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["d2v_hf", "d2v_hf.*"]),
    package_data={"d2v_hf": ["templates/*.md", "resources/*"]},
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras,
)
