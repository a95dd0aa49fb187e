"""Inputs, models, training, evaluation and inference of deep-speaker-v2."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides the pipeline's own output
