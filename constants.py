"""Every tunable of the pipeline, in one place.

Edit the values here, or override any UPPER_CASE name for one run with an environment variable named
DEEP_SPEAKER_<NAME> (e.g. DEEP_SPEAKER_MAX_COUNT_PER_CLASS=300). Three short names exist as well:
VCTK_CORPUS_PATH (= CORPUS_PATH), DEEP_SPEAKER_WORKDIR and DEEP_SPEAKER_SPLIT. Values are parsed to the
type of the default (lists are comma-separated, booleans are true/false/1/0); an unknown name or a
malformed value stops the program with a message. Every script prints the overrides it applied.

This module imports nothing of the project.
"""
import os
from pathlib import Path

# ----------------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------------
# Root of the corpus: VCTK 0.80 (wav48/), VCTK 0.92 (wav48_silence_trimmed/) or any
# <root>/.../<speaker>/<utterance>.(wav|flac) tree. Empty means "not set"; scripts that need it say so.
CORPUS_PATH = ""
# Where the feature cache, the inputs, the training runs and the reports go (never inside git).
WORKDIR = str(Path(__file__).resolve().parent / "work")

# ----------------------------------------------------------------------------------------------------
# Audio and MFCC features
# ----------------------------------------------------------------------------------------------------
SAMPLE_RATE = 8000  # Hz; every file is resampled to this, mono, on load (original: 8 kHz)
AUDIO_EXTENSIONS = ["wav", "flac"]  # file endings taken as audio (case-insensitive)
VCTK_MIC = "mic1"  # VCTK 0.92 has two microphones per utterance; the original used one. Empty = both
VOICE_PERCENTILE = 95.0  # voice-only trim: keep first..last sample with |x| above this percentile of |x|
SILENCE_PEAK = 1e-4  # a file whose peak |x| (full scale = 1) is below this counts as all-silent
MIN_VOICED_FRAMES = 10  # utterances with fewer frames after the trim are skipped (one window needs 10)
FRAME_LENGTH_S = 0.025  # s, analysis frame (original: 25 ms)
FRAME_STEP_S = 0.010  # s, frame hop (original: 10 ms)
NUM_MFCC = 13  # cepstral coefficients per frame; c0 is replaced by the log frame energy
NUM_MEL_FILTERS = 13  # mel filters (the original asked for 13; python_speech_features' default is 26)
FFT_SIZE = 512  # points; >= samples per frame (200 at 8 kHz)
PRE_EMPHASIS = 0.97  # python_speech_features' default
CEPSTRAL_LIFTER = 22  # python_speech_features' default
DELTA_WIDTH = 2  # N of the regression delta (original: 2); delta-delta is the delta of the delta
NUM_WORKERS = 0  # processes for the feature cache; 0 = one per available core

# ----------------------------------------------------------------------------------------------------
# Speaker split
# ----------------------------------------------------------------------------------------------------
# "vctk": the original lists below; "auto": the first NUM_SPEAKERS_CLASSIFICATION_TASK speakers of the
# corpus in sorted order are trained on, all others are unseen.
SPLIT = "vctk"
NUM_SPEAKERS_CLASSIFICATION_TASK = 80  # training speakers under SPLIT="auto" (original: 80)
# The original's 80 training speakers: p225-p311 (p235, p242, p289-p291, p296 and p309 do not exist).
VCTK_TRAIN_SPEAKERS = [f"p{n}" for n in range(225, 312) if n not in (235, 242, 289, 290, 291, 296, 309)]
# The original's 29 unseen speakers, never used in training.
VCTK_UNSEEN_SPEAKERS = [f"p{n}" for n in (312, 313, 314, 315, 316, 317, 318, 323, 326, 329, 330, 333, 334,
                                          335, 336, 339, 340, 341, 343, 345, 347, 351, 360, 361, 362, 363,
                                          364, 374, 376)]

# ----------------------------------------------------------------------------------------------------
# Inputs (ml/0_generate_inputs.py)
# ----------------------------------------------------------------------------------------------------
TRAIN_TEST_RATIO = 0.8  # per speaker, the first 80 % of utterances (sorted) train, the rest test
MAX_COUNT_PER_CLASS = 1000  # random segments cut per speaker and per split (original: 1000)
FRAMES_PER_WINDOW = 10  # frames stacked into one 390-value sample (10 x 39)
WINDOW_HOP_FRAMES = 3  # frames between consecutive windows of a segment (original: 3)
# How frames are normalised before they reach the model:
#   "per_speaker"            the original: one scalar mean/std per speaker, from its train windows.
#                            Uses the speaker's identity, so it cannot serve unseen speakers or trials.
#   "global"                 one scalar mean/std over all train windows (label-free)
#   "global_per_coefficient" a mean/std per coefficient (39) over all train windows (label-free)
#   "per_utterance"          one scalar mean/std per utterance (label-free)
#   "per_utterance_cmvn"     a mean/std per coefficient per utterance (label-free)
NORMALIZATION = "global"  # the best label-free one on the dev corpus (README, "Normalisation")
SEED = 1234  # seeds segment sampling, model initialisation and batch order
# Speaker augmentation: the training utterances of every training speaker are also played at these speeds
# (resampled, so pitch and formants move too), and each speed of each speaker becomes a training class of
# its own ("p225@0.9"), train split only. More speakers teach the embedding more: on the dev corpus it
# gained 8 points of accuracy and lowered the unseen speakers' EER (README, "Speaker augmentation").
# Accuracies are scored over the real speakers only. Empty = off (the original).
SPEED_PERTURBATION = [0.9, 1.1]
SPEED_PERTURBATION_UTTERANCES = 50  # training utterances per speaker copied (seeded choice); 0 = all. Caps memory

# ----------------------------------------------------------------------------------------------------
# Model (ml/model.py)
# ----------------------------------------------------------------------------------------------------
# "conv": 1-D convolutions over the 10 frames with the 39 coefficients as channels, ~100k parameters.
# "dense": the original, 390 -> 200 sigmoid -> softmax (~94k parameters with 80 speakers), as a reference.
MODEL = "conv"
EMBEDDING_SIZE = 200  # values per embedding (original: 200)
CONV_FILTERS = [64, 96, 96]  # output channels of the convolutions, one entry per layer
CONV_KERNEL = 3  # frames seen by each convolution
DROPOUT = 0.3  # of the pooled features before fc1 while training (conv only): it overfits the train utterances

# ----------------------------------------------------------------------------------------------------
# Training (ml/1_train_triplet_softmax_model.py)
# ----------------------------------------------------------------------------------------------------
BATCH_SIZE = 900  # windows per batch; the triplet batch is 300 anchors, 300 positives, 300 negatives
LEARNING_RATE = 0.001  # Adam (original: 0.001)
# Softmax training (Keras fit), the original's schedule
SOFTMAX_MAX_EPOCHS = 1000  # total epochs before the run stops by itself (original: 1000)
CHECKPOINT_EVERY_EPOCHS = 10  # weights are saved every this many epochs, and at the end of a run
EARLY_STOPPING_MIN_DELTA = 0.01  # validation softmax accuracy must improve by this much ...
EARLY_STOPPING_PATIENCE = 100  # ... within this many epochs, or training stops
REDUCE_LR_FACTOR = 0.5  # learning rate x this when the validation loss stalls ...
REDUCE_LR_PATIENCE = 10  # ... for this many epochs
MIN_LEARNING_RATE = 1e-4  # ... but never below this
# The learning rate over softmax pre-training (ml/learning_rate.py): "plateau" is the original's (the rate
# above, halved on plateaus); "warmup_cosine" rises linearly to SOFTMAX_PEAK_LEARNING_RATE over
# SOFTMAX_WARMUP_STEPS batches, then decays along a cosine to 0 at the end of epoch SOFTMAX_SCHEDULE_EPOCHS,
# where the run stops. Frozen re-training keeps "plateau". On the dev corpus "warmup_cosine" gained 2.3-2.6
# points of accuracy per window and 1.3-2.5 per utterance over three seeds (README, "Results").
SOFTMAX_LR_SCHEDULE = "warmup_cosine"
SOFTMAX_PEAK_LEARNING_RATE = 0.003  # Adam's rate at the end of the warm-up
SOFTMAX_WARMUP_STEPS = 500  # batches of linear warm-up (at most a tenth of the scheduled run)
SOFTMAX_SCHEDULE_EPOCHS = 3  # the length of the scheduled run, in epochs
# Training windows get a random recording level: c0 (log frame energy) of each window is shifted by a
# Gaussian draw of this std, in natural-log energy units (1.0 = 4.3 dB); 0 turns it off (ml/augmentation.py).
GAIN_AUGMENTATION_STD = 1.0
MAX_VALIDATION_WINDOWS = 100000  # test windows scored after each epoch (seeded sample); 0 = all
# Triplet training (a loop of single steps)
TRIPLET_MARGIN = 0.2  # cosine margin (original: 0.2); a batch of one speaker scores exactly this
TRIPLET_LEARNING_RATE = 0.0001  # Adam in triplet training (original: 0.001, which undid softmax pre-training: README)
TRIPLET_PAIRS_PER_BATCH = 1  # speaker pairs (A, B) sharing a triplet batch (original: 1); at most BATCH_SIZE // 3
TRIPLET_MAX_STEPS = 5000  # total steps before the run stops by itself (the original looped forever)
CHECKPOINT_EVERY_STEPS = 100  # weights are saved every this many steps, and at the end of a run
PRINT_EVERY_STEPS = 10  # moving averages are printed this often ...
MOVING_AVERAGE_STEPS = 100  # ... over this many last steps

# ----------------------------------------------------------------------------------------------------
# Evaluation (ml/2_evaluate_unseen_speakers.py) and inference (ml/3_embed_verify_identify.py)
# ----------------------------------------------------------------------------------------------------
# How an utterance's windows vote in closed-set identification: "log_probability" sums their log
# probabilities (independent evidence: one window that all but rules a speaker out counts), and
# "mean_probability" averages their probabilities.
UTTERANCE_POOLING = "log_probability"
SAP_SAN_WINDOWS_PER_SPEAKER = 300  # windows per unseen speaker for the original's SAP/SAN check (seeded)
MAX_IMPOSTOR_TRIALS = 200000  # different-speaker utterance pairs scored (seeded sample when there are more)
DCF_P_TARGET = 0.01  # prior of a target trial in the detection cost (NIST SRE convention)
DCF_COST_MISS = 1.0  # cost of missing a target trial
DCF_COST_FALSE_ALARM = 1.0  # cost of accepting an impostor trial
PROJECTION = "tsne"  # 2-D map of the unseen speakers' utterance embeddings: "tsne" or "pca"

# ----------------------------------------------------------------------------------------------------
# Demo corpus (audio/demo_corpus.py): a small synthetic VCTK-shaped corpus for the main command and tests
# ----------------------------------------------------------------------------------------------------
DEMO_NUM_SPEAKERS = 24  # speakers written
DEMO_UTTERANCES_PER_SPEAKER = 20  # utterances per speaker
DEMO_SAMPLE_RATE = 16000  # Hz of the written files
DEMO_LAYOUT = "0.92"  # "0.92": wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic1.flac; "0.80": wav48/.../*.wav
DEMO_SEED = 2018  # the same seed writes the same corpus, byte for byte

# ----------------------------------------------------------------------------------------------------
# Environment overrides (keep this section last)
# ----------------------------------------------------------------------------------------------------
ENV_PREFIX = "DEEP_SPEAKER_"
ENV_ALIASES = {"VCTK_CORPUS_PATH": "CORPUS_PATH"}  # short names kept from the original's documentation
CHOICES = {  # names whose value must be one of these
    "SPLIT": ("vctk", "auto"),
    "NORMALIZATION": ("per_speaker", "global", "global_per_coefficient", "per_utterance",
                      "per_utterance_cmvn"),
    "DEMO_LAYOUT": ("0.92", "0.80"),
    "MODEL": ("conv", "dense"),
    "SOFTMAX_LR_SCHEDULE": ("plateau", "warmup_cosine"),
    "PROJECTION": ("tsne", "pca"),
    "UTTERANCE_POOLING": ("log_probability", "mean_probability"),
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_value(raw, default, variable):
    """Parse the text of an environment variable to the type of the constant's default."""
    text = raw.strip()
    try:
        if isinstance(default, bool):
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise ValueError("expected true/false/1/0")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, list):  # items take the type of the default's first item (int, float or str)
            kind = type(default[0]) if default and not isinstance(default[0], bool) else str
            return [kind(item.strip()) for item in text.split(",") if item.strip()]
        return raw
    except ValueError as error:
        kind = type(default).__name__
        raise SystemExit(f"deep-speaker: {variable}={raw!r} is not a valid {kind} ({error})") from None


def environment_overrides(namespace, environ):
    """Apply DEEP_SPEAKER_<NAME> (and alias) variables to `namespace`; return {name: value} applied."""
    applied = {}
    for variable, raw in sorted(environ.items()):
        if variable in ENV_ALIASES:
            name = ENV_ALIASES[variable]
        elif variable.startswith(ENV_PREFIX):
            name = variable[len(ENV_PREFIX):]
        else:
            continue
        if not (name.isupper() and name in namespace) or name in ("ENV_PREFIX", "ENV_ALIASES", "CHOICES"):
            raise SystemExit(f"deep-speaker: {variable} names no setting: there is no constant {name} in "
                             f"constants.py (names are UPPER_CASE, e.g. {ENV_PREFIX}MAX_COUNT_PER_CLASS)")
        value = parse_value(raw, namespace[name], variable)
        if name in CHOICES and value not in CHOICES[name]:
            raise SystemExit(f"deep-speaker: {variable}={raw!r} must be one of {', '.join(CHOICES[name])}")
        namespace[name] = value
        applied[name] = value
    return applied


OVERRIDES = environment_overrides(globals(), os.environ)
for _name, _allowed in CHOICES.items():
    if globals()[_name] not in _allowed:
        raise SystemExit(f"deep-speaker: {_name}={globals()[_name]!r} in constants.py must be one of "
                         f"{', '.join(_allowed)}")
