#!/usr/bin/env bash
# The whole pipeline on the synthetic demo corpus, stage by stage (nothing to download).
# Everything is written under work/demo/ (override with DEEP_SPEAKER_WORKDIR). Re-running it resumes what
# was interrupted; a finished demo trains nothing again. The first run makes .venv from requirements.txt.
set -euo pipefail
cd "$(dirname "$0")"
. ./ensure_venv.sh

export DEEP_SPEAKER_WORKDIR="${DEEP_SPEAKER_WORKDIR:-$PWD/work/demo}"
export VCTK_CORPUS_PATH="$DEEP_SPEAKER_WORKDIR/corpus"
export DEEP_SPEAKER_SPLIT=auto                              # the demo's speakers are not VCTK's
export DEEP_SPEAKER_NUM_SPEAKERS_CLASSIFICATION_TASK=18     # 18 of the 24 demo speakers train, 6 are unseen
export DEEP_SPEAKER_MAX_COUNT_PER_CLASS=200                 # fewer segments than VCTK's 1000: a small corpus
export DEEP_SPEAKER_SOFTMAX_SCHEDULE_EPOCHS=10               # the learning-rate schedule spans the demo's 10 epochs

stage() { printf '\n==== stage %s: %s ====\n' "$1" "$2"; }

stage 0 "write the demo corpus (VCTK 0.92 layout) to $VCTK_CORPUS_PATH"
python -m audio.demo_corpus "$VCTK_CORPUS_PATH"

stage 1 "feature cache and train/test inputs"
python ml/0_generate_inputs.py

stage 2 "softmax pre-training"
python ml/1_train_triplet_softmax_model.py --loss_on_softmax --epochs 10

stage 3 "cosine triplet training of the embeddings"
python ml/1_train_triplet_softmax_model.py --loss_on_embeddings --normalize_embeddings --steps 300

stage 4 "softmax re-trained on the frozen embeddings (the accuracy check)"
python ml/1_train_triplet_softmax_model.py --loss_on_softmax --freeze_embedding_weights --normalize_embeddings --epochs 5

stage 5 "evaluation on the unseen speakers (the frozen run's model; report and plots in its run folder)"
python ml/2_evaluate_unseen_speakers.py

stage 6 "speaker change detection on conversations of the unseen speakers (threshold tuned on the training speakers' test utterances)"
python ml/4_detect_speaker_changes.py evaluate

# recordings of the last two (unseen) demo speakers
files=$(find "$VCTK_CORPUS_PATH" -name '*.flac' -o -name '*.wav' | sort)
last=$(echo "$files" | tail -n 1)
same=$(echo "$files" | tail -n 2 | head -n 1)
other=$(echo "$files" | grep -v "/$(basename "$(dirname "$last")")/" | tail -n 1)
cat <<EOT

==== next: the demo's model on any recordings (wav/flac, any rate) ====
. .venv/bin/activate
python ml/3_embed_verify_identify.py --workdir $DEEP_SPEAKER_WORKDIR verify $same $last    # one speaker
python ml/3_embed_verify_identify.py --workdir $DEEP_SPEAKER_WORKDIR verify $other $last   # two speakers
python ml/4_detect_speaker_changes.py --workdir $DEEP_SPEAKER_WORKDIR detect $(ls "$DEEP_SPEAKER_WORKDIR"/runs/frozen/evaluation/*/speaker_changes_1.wav | tail -n 1)
EOT
