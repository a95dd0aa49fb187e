"""Every tunable of the pipeline, in one place.

Edit the values here, or override any UPPER_CASE name for one run with an environment variable named
DEEP_SPEAKER_<NAME> (e.g. DEEP_SPEAKER_MAX_COUNT_PER_CLASS=300). Three short names exist as well:
VCTK_CORPUS_PATH (= CORPUS_PATH), DEEP_SPEAKER_WORKDIR and DEEP_SPEAKER_SPLIT. Values are parsed to the
type of the default (lists are comma-separated, booleans are true/false/1/0); an unknown name or a
malformed value stops the program with a message. Every script prints the overrides it applied.

RECIPE picks a named set of values from RECIPES: "default" changes nothing, "original" is the 2018
pipeline as it was (dense model, per-speaker normalisation, the plateau schedule, no augmentation).
DEEP_SPEAKER_RECIPE=original (or editing RECIPE) selects it; its values are applied first, then single
DEEP_SPEAKER_<NAME> overrides on top. OVERRIDES and RECIPE_VALUES hold what each applied; resolved() gives
every setting in effect, for a run's records.

Every numeric setting has an allowed range (RANGES), checked at import after the recipe and the
overrides: a value outside it stops the program with one line per value, naming the range and the fix.

This module imports nothing of the project.
"""
import math
import operator
import os
import re
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
MIN_VOICED_FRAMES = 10  # the cache skips utterances with fewer frames after the trim; use needs one window too
FRAME_LENGTH_S = 0.025  # s, analysis frame (original: 25 ms)
FRAME_STEP_S = 0.010  # s, frame hop (original: 10 ms)
NUM_MFCC = 13  # cepstral coefficients per frame; c0 is replaced by the log frame energy
NUM_MEL_FILTERS = 13  # mel filters (the original asked for 13; python_speech_features' default is 26)
FFT_SIZE = 512  # points; >= samples per frame (200 at 8 kHz)
PRE_EMPHASIS = 0.97  # python_speech_features' default
CEPSTRAL_LIFTER = 22  # python_speech_features' default
DELTA_WIDTH = 2  # N of the regression delta (original: 2); delta-delta is the delta of the delta
NUM_WORKERS = 0  # processes for the feature cache; 0 = one per available core
CPU_DEVICES = 1  # logical CPU devices to train on (tf.distribute.MirroredStrategy when > 1 and no GPUs; ml/distribution.py)
STREAM_INPUTS = "auto"  # "yes": training and evaluation read the inputs' frames from disk as needed (memory-mapped);
# "no": held in memory; "auto": streamed when the frames exceed INPUTS_MEMORY_BUDGET_MB
INPUTS_MEMORY_BUDGET_MB = 4000  # MB of frames held in memory at most (STREAM_INPUTS = "auto")

# ----------------------------------------------------------------------------------------------------
# Speaker split
# ----------------------------------------------------------------------------------------------------
# "vctk": the original lists below; "auto": the first NUM_SPEAKERS_CLASSIFICATION_TASK speakers of the
# corpus in sorted order are trained on, all others are unseen.
SPLIT = "vctk"
NUM_SPEAKERS_CLASSIFICATION_TASK = 80  # training speakers under SPLIT="auto" (original: 80)
# Validation speakers: this share of the training speakers (a seeded choice, at least 2 when above 0) is held out
# of training; their verification EER is recorded for every checkpoint and chooses the triplet run's (its best
# step, step 0 = its start, and when to stop). The unseen speakers never choose anything. 0 = none (the original).
VALIDATION_FRACTION = 0.1
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
NORMALIZATION = "global"  # the best label-free one on the dev corpus (docs/results.md, "Normalisation")
SEED = 1234  # seeds segment sampling, model initialisation and batch order
# Speaker augmentation: the training utterances of every training speaker are also played at these speeds
# (resampled, so pitch and formants move too), and each speed of each speaker becomes a training class of
# its own ("p225@0.9"), train split only: more speakers to tell apart (docs/results.md, "Speed copies").
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
# How the conv model pools its last layer over the window's frames: "mean_max" (the mean and the maximum of each
# channel) or "mean_std" (statistics pooling, the mean and the standard deviation, as x-vectors pool a segment)
POOLING = "mean_max"
# The classifier head of softmax training: "dense" (the original's dense layer and softmax) or "cosine_margin"
# (the additive-margin softmax: MARGIN_SCALE x the cosine of the embedding and each class's weight vector, the
# true class's cosine lowered by MARGIN in training, so speakers are told apart by angle with room to spare).
SOFTMAX_HEAD = "dense"
MARGIN_SCALE = 30.0  # s: the cosines' scale in the cosine head's softmax
MARGIN = 0.2  # m: subtracted from the true class's cosine in the loss (cosine head only); 0 = plain softmax

# ----------------------------------------------------------------------------------------------------
# Training (ml/1_train_triplet_softmax_model.py)
# ----------------------------------------------------------------------------------------------------
BATCH_SIZE = 900  # windows per batch; the triplet batch is 300 anchors, 300 positives, 300 negatives
LEARNING_RATE = 0.001  # Adam (original: 0.001)
# Softmax training (Keras fit), the original's schedule
SOFTMAX_MAX_EPOCHS = 1000  # total epochs before the run stops by itself (original: 1000)
CHECKPOINT_EVERY_EPOCHS = 10  # weights are saved every this many epochs, and at the end of a run ...
EVERY_EPOCH_CHECKPOINTS_UP_TO = 20  # ... but after every epoch when the run is this many epochs or shorter
KEEP_CHECKPOINTS = 3  # newest checkpoints kept per run (the best by validation is kept besides)
EARLY_STOPPING_MIN_DELTA = 0.01  # validation softmax accuracy must improve by this much ...
EARLY_STOPPING_PATIENCE = 100  # ... within this many epochs, or training stops
REDUCE_LR_FACTOR = 0.5  # learning rate x this when the validation loss stalls ...
REDUCE_LR_PATIENCE = 10  # ... for this many epochs
MIN_LEARNING_RATE = 1e-4  # ... but never below this
# The learning rate over softmax pre-training (ml/learning_rate.py): "plateau" is the original's (the rate
# above, halved on plateaus); "warmup_cosine" rises linearly to SOFTMAX_PEAK_LEARNING_RATE over
# SOFTMAX_WARMUP_STEPS batches, then decays along a cosine to 0 at the end of epoch SOFTMAX_SCHEDULE_EPOCHS,
# where the run stops. Frozen re-training keeps "plateau". How much each helped: docs/results.md, "Seeds".
SOFTMAX_LR_SCHEDULE = "warmup_cosine"
SOFTMAX_PEAK_LEARNING_RATE = 0.003  # Adam's rate at the end of the warm-up
SOFTMAX_WARMUP_STEPS = 500  # batches of linear warm-up (at most a tenth of the scheduled run)
SOFTMAX_SCHEDULE_EPOCHS = 3  # the length of the scheduled run, in epochs
# Training windows get a random recording level: c0 (log frame energy) of each window is shifted by a
# Gaussian draw of this std, in natural-log energy units (1.0 = 4.3 dB); 0 turns it off (ml/augmentation.py).
GAIN_AUGMENTATION_STD = 1.0
# Training windows may also get a random channel (a smooth filter: ml/augmentation.py): cepstra 1..ORDER are
# shifted by Gaussian draws whose std is the amplitude in dB of each of the filter's cosines over the mel bands;
# 0 turns it off.
CHANNEL_AUGMENTATION_DB = 0.0
CHANNEL_AUGMENTATION_ORDER = 3  # cepstra shifted (1..ORDER): the filter's smoothness
MAX_VALIDATION_WINDOWS = 100000  # test windows scored after each epoch (seeded sample); 0 = all
# Triplet training (a loop of single steps)
TRIPLET_MARGIN = 0.2  # cosine margin (original: 0.2); a batch of one speaker scores exactly this
TRIPLET_LEARNING_RATE = 0.0001  # Adam in triplet training (original: 0.001, which undid pre-training: docs/results.md)
TRIPLET_PAIRS_PER_BATCH = 1  # speaker pairs (A, B) sharing a triplet batch (original: 1); at most BATCH_SIZE // 3
# What a triplet is made of: "original", single windows (anchor and positive of a speaker A, negative of B);
# "segments", segments of TRIPLET_SEGMENT_WINDOWS windows pooled as an utterance is (the mean of unit window
# embeddings), TRIPLET_SEGMENTS_PER_SPEAKER per class and as many classes as BATCH_SIZE windows hold, each segment
# with its batch's hardest positive and hardest negative ("batch-hard").
TRIPLET_SELECTION = "original"
TRIPLET_SEGMENT_WINDOWS = 20  # windows per segment, WINDOW_HOP_FRAMES apart (20: 67 frames, ~0.7 s)
TRIPLET_SEGMENTS_PER_SPEAKER = 3  # segments per class in a batch (>= 2: every segment needs a positive)
# Triplet training adds this weight x the softmax head's loss (on the same windows, the head trained too); 0 = the
# triplet loss alone, the head left as pre-training made it (the original)
TRIPLET_SOFTMAX_WEIGHT = 0.0
TRIPLET_MAX_STEPS = 5000  # total steps before the run stops by itself (the original looped forever)
CHECKPOINT_EVERY_STEPS = 100  # weights are saved every this many steps, and at the end of a run
TRIPLET_PATIENCE = 10  # checkpoints in a row without a better validation EER stop triplet training
# A triplet checkpoint is better than the best so far only when its validation EER is lower by more than this many
# binomial standard errors of the best's EER (over the validation speakers' same-speaker trials): a smaller
# difference is noise of the few validation speakers. 0 = any improvement.
VALIDATION_SIGNIFICANCE = 1.0
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
# Adaptive S-norm, reported beside the plain cosine figures: each trial score is normalised by the mean and std
# of each side's ASNORM_TOP_K best scores against a cohort of training speakers' utterances.
ASNORM_COHORT_UTTERANCES = 1000  # training utterances in the cohort (a seeded sample); 0 = no AS-norm figures
ASNORM_TOP_K = 50  # cohort scores per side

# ----------------------------------------------------------------------------------------------------
# Speaker change detection (ml/4_detect_speaker_changes.py, ml/speaker_changes.py)
# ----------------------------------------------------------------------------------------------------
# Window embeddings (FRAMES_PER_WINDOW frames, every CHANGE_EMBED_HOP_FRAMES frames) of the voiced frames are
# averaged over CHANGE_WINDOW_S left and right of every candidate point, CHANGE_HOP_S apart; the cosine distance
# of the two averages is the change curve. Its peaks of at least the threshold, CHANGE_MIN_SEGMENT_S apart,
# are the changes. The threshold is tuned by `evaluate` on conversations of the validation speakers (when there are
# at least max(CONVERSATION_SPEAKERS); else of the training speakers' test utterances) and stored with the checkpoint's evaluation; `detect --threshold` overrides it.
CHANGE_WINDOW_S = 1.5  # s of audio on each side of a candidate point
# The curve: "cosine", the cosine distance of the two sides' mean embeddings; "contrast", that distance less the
# mean distance between the two halves of each side (how far apart the sides are beyond how far one speaker's
# stretches of half that length lie apart: a speaker whose embeddings vary more needs a larger step to count).
CHANGE_CURVE = "contrast"
# Merging (0 = off: the changes are the curve's peaks of at least the threshold): every peak is a candidate; the
# candidate whose two adjacent segments (each up to this many s) score lowest on the curve is removed, and its
# neighbours scored again over their grown segments, until the lowest scores at least the threshold.
CHANGE_MERGE_REACH_S = 3.0
# Clustering (0 = off): the segments between candidates are clustered over the whole recording (average linkage of
# their mean embeddings), and a candidate's strength is (its merging or peak strength + this weight x how far apart
# its two segments' clusters stay) / (1 + weight): the recording's other turns of the same speakers help decide.
CHANGE_CLUSTER_WEIGHT = 0.5
CHANGE_CLUSTER_SEGMENTS = 400  # segments clustered at once; longer recordings in overlapping blocks (memory ~ this^2)
CHANGE_HOP_S = 0.05  # s between candidate points
CHANGE_EMBED_HOP_FRAMES = 3  # frames between the window embeddings of a recording
CHANGE_MIN_SEGMENT_S = 1.0  # s, the shortest segment: changes closer than this to each other or to an end are dropped
CHANGE_MIN_VOICED_S = 0.3  # s of voiced frames each side needs for its point to be a candidate
CHANGE_VAD_DB = 30.0  # a frame is voiced when its energy is within this many dB of the recording's loud frames
CHANGE_VAD_QUANTILE = 0.95  # "loud": this quantile of the frame energies
# Synthetic conversations of `evaluate`: seeded, from the unseen speakers' utterances (and, to tune the
# threshold, from the validation speakers or the training speakers' test utterances), no overlap.
CONVERSATIONS = 100  # conversations evaluated (and as many for tuning)
CONVERSATION_SPEAKERS = [2, 4]  # speakers per conversation: from, to (inclusive)
CONVERSATION_TURNS = [8, 20]  # turns per conversation: from, to; consecutive turns have different speakers
CONVERSATION_UTTERANCES_PER_TURN = [1, 3]  # utterances per turn: from, to
# The threshold is tuned on CONVERSATIONS conversations like the test's and as many more whose turns hold this many
# utterances (from, to): it then holds for turns longer than the test's too. Equal to CONVERSATION_UTTERANCES_PER_TURN:
# all tuning conversations like the test's.
CONVERSATION_TUNING_LONG_TURNS = [2, 6]
CONVERSATION_PAUSE_S = [0.1, 0.5]  # s of silence between utterances: from, to (uniform)
CONVERSATION_NOISE = 1e-4  # std of the background noise added to the whole conversation (full scale = 1)
CHANGE_COLLARS_S = [0.5, 0.25]  # s; a detected change within this of a true one is a hit; the first one tunes
CONVERSATION_PLOTS = 3  # conversations plotted by `evaluate`
# The delta-BIC baseline: full-covariance Gaussians of the NUM_MFCC static coefficients of the voiced frames in
# the same windows; BIC_PENALTY weighs the model-size penalty (1 = the textbook BIC).
BIC_PENALTY = 1.0

# ----------------------------------------------------------------------------------------------------
# Demo corpus (audio/demo_corpus.py): a small synthetic VCTK-shaped corpus for the main command and tests
# ----------------------------------------------------------------------------------------------------
DEMO_NUM_SPEAKERS = 24  # speakers written
DEMO_UTTERANCES_PER_SPEAKER = 20  # utterances per speaker
DEMO_SAMPLE_RATE = 16000  # Hz of the written files
DEMO_LAYOUT = "0.92"  # "0.92": wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic1.flac; "0.80": wav48/.../*.wav
DEMO_SEED = 2018  # the same seed writes the same corpus, byte for byte

# ----------------------------------------------------------------------------------------------------
# Recipes
# ----------------------------------------------------------------------------------------------------
# A named set of values applied over the ones above (then DEEP_SPEAKER_<NAME> overrides apply on top):
# "default" keeps them, "original" is the 2018 pipeline as it was, to compare against.
RECIPE = "default"  # "default" or "original" (RECIPES below); DEEP_SPEAKER_RECIPE=original selects it for a run
RECIPES = {
    "default": {},
    # Only the values where the original differs from the defaults above. TRIPLET_MAX_STEPS and the checkpoint
    # housekeeping keep their defaults: the original's triplet loop never stopped and it deleted no checkpoint.
    "original": {
        "MODEL": "dense",  # Dense 390 -> 200 sigmoid "fc1" -> softmax, ~94k parameters
        "NORMALIZATION": "per_speaker",  # one scalar mean/std per speaker, from its train segments
        "SOFTMAX_LR_SCHEDULE": "plateau",  # Adam 0.001, halved on plateaus (min 1e-4), up to 1000 epochs
        "SPEED_PERTURBATION": [],  # no speed copies: the 80 real speakers are the classes
        "GAIN_AUGMENTATION_STD": 0.0,  # no level augmentation
        "TRIPLET_LEARNING_RATE": 0.001,  # one Adam rate, 0.001, for every mode
        "MAX_VALIDATION_WINDOWS": 0,  # Keras fit validated on all test windows
        "VALIDATION_FRACTION": 0.0,  # no validation speakers: all 80 train, the latest checkpoint is used
    },
}

# ----------------------------------------------------------------------------------------------------
# Environment overrides and range checks (keep this section last)
# ----------------------------------------------------------------------------------------------------
ENV_PREFIX = "DEEP_SPEAKER_"
ENV_ALIASES = {"VCTK_CORPUS_PATH": "CORPUS_PATH"}  # short names kept from the original's documentation
CHOICES = {  # names whose value must be one of these
    "SPLIT": ("vctk", "auto"),
    "NORMALIZATION": ("per_speaker", "global", "global_per_coefficient", "per_utterance",
                      "per_utterance_cmvn"),
    "DEMO_LAYOUT": ("0.92", "0.80"),
    "MODEL": ("conv", "dense"),
    "SOFTMAX_HEAD": ("dense", "cosine_margin"),
    "POOLING": ("mean_max", "mean_std"),
    "SOFTMAX_LR_SCHEDULE": ("plateau", "warmup_cosine"),
    "PROJECTION": ("tsne", "pca"),
    "UTTERANCE_POOLING": ("log_probability", "mean_probability"),
    "RECIPE": tuple(RECIPES),  # "default", "original"
    "STREAM_INPUTS": ("auto", "yes", "no"),
    "TRIPLET_SELECTION": ("original", "segments"),
    "CHANGE_CURVE": ("cosine", "contrast"),
}
# The allowed range of every numeric setting: name -> (kind, condition, ...). Kinds: "int", "number" (an int
# or a finite float; a bool is neither), "ints" and "numbers" (a list whose every entry is one and meets the
# conditions). A condition is an operator and a number, or an expression of other constants (checked only
# while those are in range themselves); "non-empty", "distinct" and "from-to" (two entries, the first <= the
# second) apply to the list itself.
RANGES = {
    # Audio and MFCC features
    "SAMPLE_RATE": ("int", ">= 1000"),  # below 1 kHz no speech band is left
    "VOICE_PERCENTILE": ("number", ">= 0", "< 100"),
    "SILENCE_PEAK": ("number", ">= 0", "< 1"),  # full scale = 1; 0 = no file counts as silent
    "MIN_VOICED_FRAMES": ("int", ">= 1"),
    "FRAME_LENGTH_S": ("number", "> 0", ">= 32 / SAMPLE_RATE"),  # at least 32 samples per frame
    "FRAME_STEP_S": ("number", "> 0", "<= FRAME_LENGTH_S"),  # frames must not leave gaps
    "NUM_MFCC": ("int", ">= 1"),
    "NUM_MEL_FILTERS": ("int", ">= 1", ">= NUM_MFCC"),  # a cepstrum has at most as many values as filters
    "FFT_SIZE": ("int", ">= 1", ">= FRAME_LENGTH_S * SAMPLE_RATE"),  # samples per frame
    "PRE_EMPHASIS": ("number", ">= 0", "< 1"),
    "CEPSTRAL_LIFTER": ("number", ">= 0"),  # 0 = no liftering
    "DELTA_WIDTH": ("int", ">= 1"),
    "NUM_WORKERS": ("int", ">= 0"),  # 0 = one per core
    "CPU_DEVICES": ("int", ">= 1"),
    "INPUTS_MEMORY_BUDGET_MB": ("number", ">= 0"),
    # Speaker split
    "NUM_SPEAKERS_CLASSIFICATION_TASK": ("int", ">= 2"),  # a classifier needs two classes
    "VALIDATION_FRACTION": ("number", ">= 0", "< 0.5"),
    # Inputs
    "TRAIN_TEST_RATIO": ("number", "> 0", "< 1"),
    "MAX_COUNT_PER_CLASS": ("int", ">= 1"),
    "FRAMES_PER_WINDOW": ("int", ">= 1"),
    "WINDOW_HOP_FRAMES": ("int", ">= 1"),
    "SEED": ("int", ">= 0", "< 2 ** 32"),  # NumPy's legacy seed, set by Keras
    "SPEED_PERTURBATION": ("numbers", "distinct", "> 0", "!= 1"),  # 1 would copy the real speaker
    "SPEED_PERTURBATION_UTTERANCES": ("int", ">= 0"),  # 0 = all
    # Model
    "EMBEDDING_SIZE": ("int", ">= 1"),
    "CONV_FILTERS": ("ints", "non-empty", ">= 1"),
    "CONV_KERNEL": ("int", ">= 1"),
    "DROPOUT": ("number", ">= 0", "< 1"),
    "MARGIN_SCALE": ("number", "> 0", "<= 64"),  # the usual range is 30-64; far above, probabilities underflow float32
    "MARGIN": ("number", ">= 0", "< 1"),
    # Training
    "BATCH_SIZE": ("int", ">= 3"),  # a triplet batch is three thirds: anchors, positives, negatives
    "LEARNING_RATE": ("number", "> 0"),
    "SOFTMAX_MAX_EPOCHS": ("int", ">= 1"),
    "CHECKPOINT_EVERY_EPOCHS": ("int", ">= 1"),
    "EVERY_EPOCH_CHECKPOINTS_UP_TO": ("int", ">= 0"),  # 0 = never every epoch
    "KEEP_CHECKPOINTS": ("int", ">= 1"),
    "EARLY_STOPPING_MIN_DELTA": ("number", ">= 0"),
    "EARLY_STOPPING_PATIENCE": ("int", ">= 0"),
    "REDUCE_LR_FACTOR": ("number", "> 0", "< 1"),
    "REDUCE_LR_PATIENCE": ("int", ">= 0"),
    "MIN_LEARNING_RATE": ("number", ">= 0"),
    "SOFTMAX_PEAK_LEARNING_RATE": ("number", "> 0"),
    "SOFTMAX_WARMUP_STEPS": ("int", ">= 0"),
    "SOFTMAX_SCHEDULE_EPOCHS": ("int", ">= 1"),
    "GAIN_AUGMENTATION_STD": ("number", ">= 0"),  # 0 = off
    "CHANNEL_AUGMENTATION_DB": ("number", ">= 0"),  # 0 = off
    "CHANNEL_AUGMENTATION_ORDER": ("int", ">= 1"),
    "MAX_VALIDATION_WINDOWS": ("int", ">= 0"),  # 0 = all
    "TRIPLET_MARGIN": ("number", ">= 0"),
    "TRIPLET_LEARNING_RATE": ("number", "> 0"),
    "TRIPLET_PAIRS_PER_BATCH": ("int", ">= 1", "<= BATCH_SIZE // 3"),  # every pair needs one anchor at least
    "TRIPLET_MAX_STEPS": ("int", ">= 1"),
    "TRIPLET_SEGMENTS_PER_SPEAKER": ("int", ">= 2"),
    "TRIPLET_SOFTMAX_WEIGHT": ("number", ">= 0"),
    # that a batch holds two classes' segments is checked when segment triplets are used (ml/distribution.py)
    "TRIPLET_SEGMENT_WINDOWS": ("int", ">= 1"),
    "CHECKPOINT_EVERY_STEPS": ("int", ">= 1"),
    "TRIPLET_PATIENCE": ("int", ">= 1"),
    "VALIDATION_SIGNIFICANCE": ("number", ">= 0"),
    "PRINT_EVERY_STEPS": ("int", ">= 1"),
    "MOVING_AVERAGE_STEPS": ("int", ">= 1"),
    # Evaluation and inference
    "SAP_SAN_WINDOWS_PER_SPEAKER": ("int", ">= 2"),  # SAP needs two windows of a speaker
    "ASNORM_COHORT_UTTERANCES": ("int", ">= 0"),
    "ASNORM_TOP_K": ("int", ">= 1"),
    "MAX_IMPOSTOR_TRIALS": ("int", ">= 1"),
    "DCF_P_TARGET": ("number", "> 0", "< 1"),
    "DCF_COST_MISS": ("number", "> 0"),
    "DCF_COST_FALSE_ALARM": ("number", "> 0"),
    # Speaker change detection
    "CHANGE_WINDOW_S": ("number", "> 0", ">= FRAMES_PER_WINDOW * FRAME_STEP_S"),  # at least one window
    "CHANGE_HOP_S": ("number", "> 0", "<= CHANGE_MIN_SEGMENT_S"),  # at least one candidate per segment
    "CHANGE_MERGE_REACH_S": ("number", ">= 0"),
    "CHANGE_CLUSTER_WEIGHT": ("number", ">= 0"),
    "CHANGE_CLUSTER_SEGMENTS": ("int", ">= 4"),
    "CHANGE_EMBED_HOP_FRAMES": ("int", ">= 1"),
    "CHANGE_MIN_SEGMENT_S": ("number", "> 0"),
    "CHANGE_MIN_VOICED_S": ("number", ">= 0", "<= CHANGE_WINDOW_S"),
    "CHANGE_VAD_DB": ("number", "> 0"),
    "CHANGE_VAD_QUANTILE": ("number", "> 0", "<= 1"),
    "CONVERSATIONS": ("int", ">= 1"),
    "CONVERSATION_SPEAKERS": ("ints", "from-to", ">= 2"),
    "CONVERSATION_TURNS": ("ints", "from-to", ">= 2"),
    "CONVERSATION_UTTERANCES_PER_TURN": ("ints", "from-to", ">= 1"),
    "CONVERSATION_TUNING_LONG_TURNS": ("ints", "from-to", ">= 1"),
    "CONVERSATION_PAUSE_S": ("numbers", "from-to", ">= 0"),
    "CONVERSATION_NOISE": ("number", ">= 0", "< 1"),
    "CHANGE_COLLARS_S": ("numbers", "non-empty", "> 0"),
    "CONVERSATION_PLOTS": ("int", ">= 0"),
    "BIC_PENALTY": ("number", ">= 0"),
    # Demo corpus
    "DEMO_NUM_SPEAKERS": ("int", ">= 2"),
    "DEMO_UTTERANCES_PER_SPEAKER": ("int", ">= 2"),  # one to train on, one to test
    "DEMO_SAMPLE_RATE": ("int", "> 0"),
    "DEMO_SEED": ("int", ">= 0"),
}
# Module-level UPPER_CASE names that are machinery, not settings: never overridden, checked or recorded.
NOT_SETTINGS = ("ENV_PREFIX", "ENV_ALIASES", "CHOICES", "RECIPES", "RANGES", "NOT_SETTINGS", "OVERRIDES",
                "RECIPE_VALUES")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_KINDS = {"int": "an integer", "number": "a number", "ints": "a list of integers", "numbers": "a list of numbers"}
_NOUNS = {"ints": "integers", "numbers": "numbers"}  # the entries of a list kind
_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "!=": operator.ne}


def is_setting(name, namespace):
    """Whether `name` is a setting of `namespace`: an UPPER_CASE public name that is not machinery."""
    return name.isupper() and not name.startswith("_") and name not in NOT_SETTINGS and name in namespace


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
        if not is_setting(name, namespace):
            raise SystemExit(f"deep-speaker: {variable} names no setting: there is no constant {name} in "
                             f"constants.py (names are UPPER_CASE, e.g. {ENV_PREFIX}MAX_COUNT_PER_CLASS)")
        value = parse_value(raw, namespace[name], variable)
        if name in CHOICES and value not in CHOICES[name]:
            raise SystemExit(f"deep-speaker: {variable}={raw!r} must be one of {', '.join(CHOICES[name])}")
        namespace[name] = value
        applied[name] = value
    return applied


def apply_recipe(namespace, overridden=()):
    """Set the values of the recipe namespace["RECIPE"] names, except the `overridden` ones (those win);
    return the recipe's {name: value}."""
    recipe = namespace["RECIPE"]
    if recipe not in RECIPES:
        raise SystemExit(f"deep-speaker: RECIPE={recipe!r} must be one of {', '.join(RECIPES)} (set it with "
                         f"{ENV_PREFIX}RECIPE or in constants.py)")
    values = {name: list(value) if isinstance(value, list) else value for name, value in RECIPES[recipe].items()}
    for name, value in values.items():
        if not is_setting(name, namespace):
            raise SystemExit(f"deep-speaker: recipe {recipe!r} sets {name}, which is no setting of constants.py")
        if name not in overridden:
            namespace[name] = list(value) if isinstance(value, list) else value
    return values


def _plain(value):
    """Whether `value` is a setting's value: a str, number or bool, or a list or tuple of them."""
    scalar = (str, int, float, bool)
    return isinstance(value, scalar) or (isinstance(value, (list, tuple)) and all(isinstance(v, scalar) for v in value))


def resolved(namespace=None):
    """{name: value} of every setting in effect (default: this module's), JSON-serialisable, lists as lists."""
    namespace = globals() if namespace is None else namespace
    return {name: list(value) if isinstance(value, (list, tuple)) else value for name, value in namespace.items()
            if is_setting(name, namespace) and _plain(value)}


def _bound(expression, namespace):
    """The number a condition compares with (None when it cannot be computed): a literal, or an expression of
    other constants, evaluated over the settings only and without builtins."""
    try:
        bound = eval(expression, {"__builtins__": {}}, resolved(namespace))  # noqa: S307 - this file's own text
    except Exception:  # noqa: BLE001 - another setting of the wrong type: that one's own rule reports it
        return None
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        return None
    return round(bound, 9) if isinstance(bound, float) else bound  # 0.025 * 8000 is 200, not 200.00000000000003


def _references(condition):
    """The constants a condition's expression names."""
    return set(re.findall(r"\b[A-Z][A-Z0-9_]*\b", condition))


def _is_number(value, kind):
    """Whether `value` is an item of `kind`: an int for "int"/"ints", a finite int or float otherwise; never a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) if kind in ("int", "ints") else math.isfinite(value)


def _breaks(name, namespace, usable):
    """'type' when the setting `name` is not of its rule's kind, 'range' when it breaks one of its conditions
    that `usable(condition)` accepts, None when it keeps them."""
    kind, *conditions = RANGES[name]
    value = namespace[name]
    listed = kind in _NOUNS
    if listed != isinstance(value, list):
        return "type"
    items = value if listed else [value]
    if not all(_is_number(item, kind) for item in items):
        return "type"
    for condition in conditions:
        if condition == "non-empty":
            kept = bool(value)
        elif condition == "distinct":
            kept = len(set(value)) == len(value)
        elif condition == "from-to":
            kept = len(value) == 2 and value[0] <= value[1]
        elif not usable(condition):
            continue
        else:
            symbol, expression = condition.split(" ", 1)
            bound = _bound(expression, namespace)
            kept = bound is None or all(_COMPARE[symbol](item, bound) for item in items)
        if not kept:
            return "range"
    return None


def _allowed(name, namespace):
    """The rule of `name` in words: "an integer >= 1 and <= BATCH_SIZE // 3 (= 300)"."""
    kind, *conditions = RANGES[name]
    properties = [c for c in conditions if c in ("non-empty", "distinct", "from-to")]
    limits = []
    for condition in conditions:
        if condition not in properties:
            bound = _bound(condition.split(" ", 1)[1], namespace) if _references(condition) else None
            limits.append(f"{condition} (= {bound:g})" if bound is not None else condition)
    text = _KINDS[kind]
    if kind in _NOUNS:
        text = f"a {'non-empty ' * ('non-empty' in properties)}list of {'distinct ' * ('distinct' in properties)}"
        text += _NOUNS[kind]
        if "from-to" in properties:
            text = f"two {_NOUNS[kind]}, from and to (from <= to)"
    if limits:
        text += (", each " if kind in _NOUNS else " ") + " and ".join(limits)
    return text


def range_errors(namespace):
    """One line per setting of `namespace` outside its allowed range (RANGES): the name, the value, the range
    and how to change it. A condition on other constants is skipped while one of those is out of range itself,
    so one wrong value gives one line."""
    names = [name for name in RANGES if name in namespace]
    wrong = {name for name in names if _breaks(name, namespace, lambda condition: not _references(condition))}
    errors = []
    for name in names:
        broken = _breaks(name, namespace, lambda condition: not _references(condition) & wrong)
        if broken:
            what = "out of range" if broken == "range" else f"not {_KINDS[RANGES[name][0]]}"
            errors.append(f"{name} = {namespace[name]!r} is {what}: it must be {_allowed(name, namespace)}; set it "
                          f"with {ENV_PREFIX}{name} or in constants.py")
    return errors


OVERRIDES = environment_overrides(globals(), os.environ)  # {name: value} set by DEEP_SPEAKER_<NAME> variables
RECIPE_VALUES = apply_recipe(globals(), OVERRIDES)  # {name: value} set by the recipe (overrides win over it)
for _name, _allowed_values in CHOICES.items():
    if globals()[_name] not in _allowed_values:
        raise SystemExit(f"deep-speaker: {_name}={globals()[_name]!r} in constants.py must be one of "
                         f"{', '.join(_allowed_values)}")
_errors = range_errors(globals())
if _errors:
    raise SystemExit("\n".join(f"deep-speaker: {error}" for error in _errors))
