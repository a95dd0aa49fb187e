"""Write a small, deterministic, synthetic corpus of speech-like audio in the layout of VCTK.

The pipeline can then run end to end, and tests stay self-contained, without any downloaded data:

    python -m audio.demo_corpus OUT_DIR [--speakers N] [--utterances N] [--sample-rate HZ]
                                        [--layout 0.92|0.80] [--seed N]

Each speaker gets a voice (mean f0 and pitch range, vocal-tract length, glottal tilt, breathiness,
jitter, shimmer, nasality, speaking rate and a slight "accent" of its own on every vowel), drawn so that
speakers differ but overlap. Each utterance says a random string of made-up words built from a small
phone inventory (vowels, approximants, nasals, fricatives, stops), with smooth formant transitions, an
intonation contour and an amplitude envelope, framed by near-silence.

Synthesis is source-filter in the short-time Fourier domain: a band-limited harmonic comb at f0(t)
(voicing), white noise (aspiration, frication) and the time-varying envelopes of glottis, vocal tract,
nasal coupling and fricative noise, multiplied frame by frame and overlap-added. Everything is vectorised
with numpy; there are no per-sample Python loops.

Every random draw comes from generators seeded by (seed, speaker index[, utterance number]), so the same
arguments write the same bytes, and speaker k sounds the same whatever the number of speakers written.
"""
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import click
import numpy as np
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import gaussian_filter1d

import constants
import utils

# ----------------------------------------------------------------------------------------------------
# Corpus layout
# ----------------------------------------------------------------------------------------------------
FIRST_SPEAKER_NUMBER = 225  # VCTK's first speaker is p225


class Layout(NamedTuple):
    """Where and how one VCTK release stores its audio."""
    audio_folder: str
    name_suffix: str  # after <spk>_<nnn> in the audio file name
    extension: str
    file_format: str  # soundfile's name of the container


LAYOUTS = {
    "0.92": Layout("wav48_silence_trimmed", "_mic1", "flac", "FLAC"),
    "0.80": Layout("wav48", "", "wav", "WAV"),
}
TEXT_FOLDER = "txt"
SPEAKER_INFO_FILE = "speaker-info.txt"
SPEAKER_INFO_HEADER = "ID  AGE  GENDER  ACCENTS  REGION"

# ----------------------------------------------------------------------------------------------------
# Phone inventory. Formant targets are for an average adult male vocal tract (scale 1.0) and are scaled
# by each speaker's vocal-tract factor; F4 and the formants above it start from one value for all phones.
# ----------------------------------------------------------------------------------------------------
class Sonorant(NamedTuple):
    """A phone with formants of its own: spelling and F1-F3 targets (Hz)."""
    spelling: str
    formants: tuple


class Obstruent(NamedTuple):
    """A fricative or stop: spelling, voicing, noise band (centre and width, Hz), level, F1-F2 locus (Hz)."""
    spelling: str
    voiced: bool
    noise_centre: float
    noise_bandwidth: float
    level: float  # of the noise: /sh/ is louder than /s/, /f/ is faint, voiced ones are weaker
    locus: tuple  # (F1, F2) the formants move towards; (nan, nan): coarticulates with the vowels


NO_LOCUS = (np.nan, np.nan)
VOWELS = {  # Peterson & Barney (1952), averages of the men
    "iy": Sonorant("ee", (270, 2290, 3010)),
    "ih": Sonorant("i", (390, 1990, 2550)),
    "eh": Sonorant("e", (530, 1840, 2480)),
    "ae": Sonorant("a", (660, 1720, 2410)),
    "ah": Sonorant("u", (520, 1190, 2390)),
    "aa": Sonorant("ah", (730, 1090, 2440)),
    "ao": Sonorant("aw", (570, 840, 2410)),
    "uh": Sonorant("oo", (440, 1020, 2240)),
    "uw": Sonorant("ou", (300, 870, 2240)),
    "er": Sonorant("er", (490, 1350, 1690)),
}
APPROXIMANTS = {  # typical textbook values, rounded
    "l": Sonorant("l", (360, 1000, 2700)),
    "r": Sonorant("r", (350, 1150, 1550)),
    "w": Sonorant("w", (300, 700, 2200)),
    "y": Sonorant("y", (270, 2200, 2950)),
}
NASALS = {
    "m": Sonorant("m", (270, 1000, 2200)),
    "n": Sonorant("n", (270, 1700, 2550)),
}
FRICATIVES = {
    "s": Obstruent("s", False, 5500, 2500, 1.0, (300, 1700)),
    "z": Obstruent("z", True, 5500, 2500, 0.7, (300, 1700)),
    "sh": Obstruent("sh", False, 2800, 1800, 1.3, (300, 2000)),
    "f": Obstruent("f", False, 4000, 7000, 0.35, (300, 1000)),
    "v": Obstruent("v", True, 4000, 7000, 0.3, (300, 1000)),
}
STOPS = {  # noise band = the release burst
    "p": Obstruent("p", False, 1000, 3000, 0.5, (300, 900)),
    "b": Obstruent("b", True, 1000, 3000, 0.3, (300, 900)),
    "t": Obstruent("t", False, 4000, 3000, 1.0, (300, 1700)),
    "d": Obstruent("d", True, 4000, 3000, 0.6, (300, 1700)),
    "k": Obstruent("k", False, 2200, 1200, 0.8, NO_LOCUS),
    "g": Obstruent("g", True, 2200, 1200, 0.5, NO_LOCUS),
}
SONORANTS = {**VOWELS, **APPROXIMANTS, **NASALS}
PHONES = {**SONORANTS, **FRICATIVES, **STOPS}
VOWEL_NAMES = list(VOWELS)
ONSETS = [*APPROXIMANTS, *NASALS, *FRICATIVES, *STOPS]
CODAS = [*NASALS, *FRICATIVES, *STOPS, "l", "r"]
F4_HZ = 3350.0
# Above F4 a tube's resonances continue every ~1 kHz; cascading them up past Nyquist keeps the tract's
# gain level there instead of rolling off at 12 dB/octave per missing formant
HIGHER_FORMANTS_HZ = (4500.0, 1000.0)  # first, spacing
HIGHER_FORMANTS_REACH = 1.5  # x Nyquist
FORMANT_BANDWIDTH = (50.0, 0.04)  # Hz + share of the centre: higher formants are wider, as in real voices
NASAL_POLE_HZ = (250.0, 100.0)  # centre, bandwidth of the nasal branch's resonance
NASAL_ZERO_BANDWIDTH_HZ = 150.0  # its anti-resonance; the centre is the speaker's

# ----------------------------------------------------------------------------------------------------
# Voices. Gender sets the centre of f0 and of the formant scale, and the two genders overlap:
# (centre, spread, lowest, highest); f0 is log-normal (spread in log units), the formant scale normal.
# ----------------------------------------------------------------------------------------------------
GENDER_VOICES = {
    "F": {"f0": (200.0, 0.12, 150.0, 260.0), "formant_scale": (1.10, 0.05, 0.98, 1.20)},
    "M": {"f0": (120.0, 0.14, 85.0, 170.0), "formant_scale": (0.95, 0.045, 0.85, 1.05)},
}
AGES = (18, 38)
FORMANT_QUIRK_SPREAD = 0.04  # log-normal spread of a speaker's own factor on each phone's formants
VOICE_RANGES = {  # drawn uniformly for every speaker
    "pitch_range": (2.0, 6.0), "bandwidth_scale": (0.8, 1.4), "glottal_corner": (1.0, 2.0),
    "tilt": (0.0, 1.2), "breathiness": (0.01, 0.25), "jitter": (0.003, 0.02), "shimmer": (0.02, 0.12),
    "nasality": (0.0, 0.8), "nasal_zero": (700.0, 1400.0), "rate": (0.85, 1.15),
}
UTTERANCE_TILT_SPREAD = 0.1  # vocal effort changes from one utterance to the next...
UTTERANCE_BREATHINESS = (0.8, 1.25)  # ...and so does breathiness (a factor)

# Syllables, words and durations (ms, before the speaker's rate), drawn uniformly from these ranges
PHONES_PER_UTTERANCE = (8, 20)
SYLLABLES_PER_WORD = (1, 3)
ONSET_PROBABILITY, CODA_PROBABILITY = 0.75, 0.3
PAUSE_PROBABILITY = 0.2  # of a short pause between two words
ACCENT_PROBABILITY = 0.7  # of a pitch accent on a word's stressed vowel
DURATION_MS = {
    "vowel": (70, 160), "approximant": (45, 80), "nasal": (50, 90), "fricative": (70, 140),
    "closure": (35, 70), "burst": (8, 15), "aspiration": (20, 45), "pause": (60, 150),
    "edge_silence": (200, 500),
}
STRESS_LENGTHENING, FINAL_LENGTHENING = 1.3, 1.4
VOICING = {"vowel": 1.0, "approximant": 0.6, "nasal": 0.45, "fricative": 0.3, "closure": 0.08}
VOWEL_LOUDNESS, STRESS_LOUDNESS = (0.85, 1.1), 1.25
FRICATION_LOUDNESS, BURST_LOUDNESS = (0.7, 1.0), (0.5, 0.9)  # factors on the phone's level
NASAL_COUPLING = 4.0  # nasal-branch strength inside /m/ and /n/ (a speaker's own is 0 to 0.8)
ASPIRATION_LEVEL = 0.35  # after a voiceless stop's release

# Control tracks: the value where a segment does not set one, and the smoothing (Gaussian sigma, ms):
# formants glide, amplitudes ramp quickly
TRACK_DEFAULTS = {"voice": 0.0, "aspiration": 0.0, "frication": 0.0, "nasal": 0.0, "accent": 0.0,
                  "noise_centre": np.nan, "noise_bandwidth": np.nan,
                  "formants": (np.nan, np.nan, np.nan, np.nan)}
TRACK_SMOOTHING_MS = {"voice": 4, "aspiration": 3, "frication": 2, "nasal": 10, "accent": 40,
                      "noise_centre": 2, "noise_bandwidth": 2, "formants": 12}
# NaN = glide between the neighbours' values; the fallback fills a track that is NaN throughout (an
# utterance without obstruents has no noise band, and needs none)
GAP_FILLED_TRACKS = {"noise_centre": 4000.0, "noise_bandwidth": 3000.0, "formants": 1000.0}

# Intonation, in semitones relative to the speaker's mean f0
F0_LIMITS_HZ = (60.0, 420.0)
UTTERANCE_PITCH_SPREAD = 0.7  # of the utterance's own pitch level
ACCENT_SIZE = (0.4, 1.0)  # x the speaker's pitch range
DECLINATION = (0.3, 0.7)  # x the speaker's pitch range, from the first voiced sound to the last
F0_WANDER_SEMITONES, F0_WANDER_MS = 0.3, 80
QUESTION_PROBABILITY = 0.15
FINAL_RISE, FINAL_FALL = (2.0, 4.0), (1.0, 3.0)  # of a question, of a statement
FINAL_CONTOUR_SHARE = 0.2  # of the utterance over which the final fall (or question rise) happens
VOICED_THRESHOLD = 0.05  # voicing amplitude above which the intonation counts a sound as voiced

# ----------------------------------------------------------------------------------------------------
# Signal
# ----------------------------------------------------------------------------------------------------
HARMONIC_CEILING = 0.95  # of Nyquist: the highest harmonic of the voicing comb
REFERENCE_RATE = 16000  # Hz; noise is scaled so that its spectral density matches this rate's
FRAME_S = 0.032  # frame of the short-time Fourier filtering
OVERLAP = 4  # frames over each sample: the hop is a quarter of a frame
# Noise levels relative to the voicing: they put /s/ about 14 dB (RMS) below /aa/, /f/ about 19 dB
FRICATION_GAIN, ASPIRATION_GAIN = 0.25, 0.06
PEAK_RANGE = (0.5, 0.9)  # of full scale, drawn per utterance
NOISE_FLOOR_DB = (55.0, 65.0)  # below the peak: the near-silence is quiet noise, never digital zero
INT16_SCALE = 32767


# ----------------------------------------------------------------------------------------------------
# Drawing voices
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Voice:
    """One speaker's fixed traits."""
    gender: str
    age: int
    f0: float  # Hz, mean
    pitch_range: float  # semitones of the accents and the declination
    formant_scale: float  # 1 / relative vocal-tract length
    formant_quirks: dict  # phone -> factors on its F1-F4: the speaker's accent
    bandwidth_scale: float
    glottal_corner: float  # Hz; above it the glottal source falls by 12 dB/octave
    tilt: float  # extra spectral tilt exponent: (1 + f/1 kHz) ** -tilt
    breathiness: float  # aspiration noise riding on the voicing
    jitter: float  # relative period-to-period f0 perturbation
    shimmer: float  # relative period-to-period amplitude perturbation
    nasality: float  # nasal coupling outside nasals
    nasal_zero: float  # Hz, anti-resonance of the nasal branch
    rate: float  # duration factor (> 1 = slower)


def draw_voice(rng):
    """Draw a speaker's voice from the gender's centres and the ranges of VOICE_RANGES."""
    gender = "F" if rng.random() < 0.5 else "M"
    centre, spread, lowest, highest = GENDER_VOICES[gender]["f0"]
    f0 = float(np.clip(np.exp(rng.normal(np.log(centre), spread)), lowest, highest))
    centre, spread, lowest, highest = GENDER_VOICES[gender]["formant_scale"]
    formant_scale = float(np.clip(rng.normal(centre, spread), lowest, highest))
    age = int(rng.integers(AGES[0], AGES[1] + 1))
    quirks = {phone: np.exp(rng.normal(0.0, FORMANT_QUIRK_SPREAD, 4)) for phone in SONORANTS}
    traits = {name: float(rng.uniform(low, high)) for name, (low, high) in VOICE_RANGES.items()}
    traits["glottal_corner"] *= f0  # the glottal formant sits at 1-2 x f0
    return Voice(gender=gender, age=age, f0=f0, formant_scale=formant_scale, formant_quirks=quirks, **traits)


def utterance_variant(voice, rng):
    """The voice on the day of one utterance: vocal effort and breathiness vary a little."""
    return replace(voice, tilt=voice.tilt + rng.normal(0.0, UTTERANCE_TILT_SPREAD),
                   breathiness=voice.breathiness * rng.uniform(*UTTERANCE_BREATHINESS))


# ----------------------------------------------------------------------------------------------------
# What an utterance says
# ----------------------------------------------------------------------------------------------------
def draw_words(rng):
    """Draw made-up words until the phone budget is spent: lists of (phone, stressed) pairs."""
    budget = rng.integers(PHONES_PER_UTTERANCE[0], PHONES_PER_UTTERANCE[1] + 1)
    words, count = [], 0
    while count < budget:
        syllables = rng.integers(SYLLABLES_PER_WORD[0], SYLLABLES_PER_WORD[1] + 1)
        stressed = rng.integers(syllables)
        word = []
        # The budget may cut a word short (and drop its stress): it ends at a syllable boundary
        for index in range(syllables):
            if count + len(word) >= budget:
                break
            if rng.random() < ONSET_PROBABILITY:
                word.append((ONSETS[rng.integers(len(ONSETS))], False))
            word.append((VOWEL_NAMES[rng.integers(len(VOWEL_NAMES))], index == stressed))
            if rng.random() < CODA_PROBABILITY:
                word.append((CODAS[rng.integers(len(CODAS))], False))
        words.append(word)
        count += len(word)
    return words


def spell(words):
    """The pseudo-text of an utterance, VCTK style: one sentence with a final full stop."""
    text = " ".join("".join(PHONES[phone].spelling for phone, _ in word) for word in words)
    return text[0].upper() + text[1:] + "."


def _duration(kind, rng, scale=1.0):
    """A random duration (ms) of a segment kind, times `scale` (the speaker's rate, lengthening)."""
    low, high = DURATION_MS[kind]
    return rng.uniform(low, high) * scale


def _sonorant_formants(phone, voice):
    """F1-F4 targets of a vowel, approximant or nasal in this speaker's mouth."""
    targets = np.array([*SONORANTS[phone].formants, F4_HZ])
    return tuple(targets * voice.formant_scale * voice.formant_quirks[phone])


def _locus(obstruent, voice):
    """F1-F2 targets during an obstruent (F3-F4 glide between the vowels)."""
    return (*(np.array(obstruent.locus) * voice.formant_scale), np.nan, np.nan)


def _obstruent_segments(phone, voice, rng):
    """Segments of a fricative, or of a stop's closure, burst and (voiceless) aspiration."""
    if phone in FRICATIVES:
        spec = FRICATIVES[phone]
        noise = {"noise_centre": spec.noise_centre * voice.formant_scale,
                 "noise_bandwidth": spec.noise_bandwidth, "formants": _locus(spec, voice)}
        return [{"ms": _duration("fricative", rng, voice.rate), "voice": VOICING["fricative"] * spec.voiced,
                 "frication": spec.level * rng.uniform(*FRICATION_LOUDNESS), **noise}]
    spec = STOPS[phone]
    segments = [
        {"ms": _duration("closure", rng, voice.rate), "formants": _locus(spec, voice),
         "voice": VOICING["closure"] * spec.voiced},
        {"ms": _duration("burst", rng, voice.rate), "frication": spec.level * rng.uniform(*BURST_LOUDNESS),
         "noise_centre": spec.noise_centre * voice.formant_scale, "noise_bandwidth": spec.noise_bandwidth},
    ]
    if not spec.voiced:
        segments.append({"ms": _duration("aspiration", rng, voice.rate), "aspiration": ASPIRATION_LEVEL})
    return segments


def _phone_segments(phone, stressed, last_vowel, voice, rng):
    """The control segments of one phone."""
    if phone in VOWELS:
        factor = (STRESS_LENGTHENING if stressed else 1.0) * (FINAL_LENGTHENING if last_vowel else 1.0)
        accent = stressed and rng.random() < ACCENT_PROBABILITY
        return [{"ms": _duration("vowel", rng, voice.rate * factor),
                 "formants": _sonorant_formants(phone, voice),
                 "voice": rng.uniform(*VOWEL_LOUDNESS) * (STRESS_LOUDNESS if stressed else 1.0),
                 "accent": rng.uniform(*ACCENT_SIZE) * voice.pitch_range if accent else 0.0}]
    if phone in SONORANTS:
        kind = "nasal" if phone in NASALS else "approximant"
        return [{"ms": _duration(kind, rng, voice.rate), "formants": _sonorant_formants(phone, voice),
                 "voice": VOICING[kind], "nasal": NASAL_COUPLING if kind == "nasal" else 0.0}]
    return _obstruent_segments(phone, voice, rng)


def utterance_segments(words, voice, rng):
    """Control segments (dicts with a duration "ms" and track values) of a whole utterance."""
    phones = [(phone, stressed) for word in words for phone, stressed in word]
    last_vowel = max(i for i, (phone, _) in enumerate(phones) if phone in VOWELS)
    segments = [{"ms": _duration("edge_silence", rng)}]
    phone_index = 0
    for word_index, word in enumerate(words):
        if word_index and rng.random() < PAUSE_PROBABILITY:
            segments.append({"ms": _duration("pause", rng, voice.rate)})
        for phone, stressed in word:
            segments += _phone_segments(phone, stressed, phone_index == last_vowel, voice, rng)
            phone_index += 1
    segments.append({"ms": _duration("edge_silence", rng)})
    return segments


# ----------------------------------------------------------------------------------------------------
# Control tracks (one value per millisecond)
# ----------------------------------------------------------------------------------------------------
def control_tracks(segments):
    """Per-millisecond tracks from the segments: held values, gaps glided over, then smoothed."""
    durations = np.maximum(1, np.round([segment["ms"] for segment in segments])).astype(int)
    tracks = {}
    for name, default in TRACK_DEFAULTS.items():
        values = np.array([segment.get(name, default) for segment in segments], dtype=float)
        track = np.repeat(values, durations, axis=0)
        if name in GAP_FILLED_TRACKS:
            track = np.apply_along_axis(_fill_gaps, 0, track, GAP_FILLED_TRACKS[name])
        tracks[name] = gaussian_filter1d(track, TRACK_SMOOTHING_MS[name], axis=0, mode="nearest")
    return tracks


def _fill_gaps(track, fallback):
    """Replace NaNs by linear interpolation between the known values (held flat beyond the ends)."""
    known = np.flatnonzero(~np.isnan(track))
    if not len(known):
        return np.full(len(track), fallback)
    return np.interp(np.arange(len(track)), known, track[known])


def intonation(tracks, voice, rng):
    """f0 (Hz per ms): declination, pitch accents, slow wander and a final fall or question rise."""
    length = len(tracks["voice"])
    voiced = np.flatnonzero(tracks["voice"] > VOICED_THRESHOLD)
    position = np.clip((np.arange(length) - voiced[0]) / max(1, voiced[-1] - voiced[0]), 0.0, 1.0)
    wander = gaussian_filter1d(rng.standard_normal(length), F0_WANDER_MS)
    final = np.clip((position - 1.0 + FINAL_CONTOUR_SHARE) / FINAL_CONTOUR_SHARE, 0.0, 1.0)
    question = rng.random() < QUESTION_PROBABILITY
    final_size = rng.uniform(*FINAL_RISE) if question else -rng.uniform(*FINAL_FALL)
    semitones = (rng.normal(0.0, UTTERANCE_PITCH_SPREAD)
                 + rng.uniform(*DECLINATION) * voice.pitch_range * (0.5 - position)
                 + tracks["accent"]
                 + F0_WANDER_SEMITONES * wander / wander.std()
                 + final_size * final)
    return np.clip(voice.f0 * 2.0 ** (semitones / 12.0), *F0_LIMITS_HZ)


# ----------------------------------------------------------------------------------------------------
# Synthesis
# ----------------------------------------------------------------------------------------------------
def harmonic_comb(phase, f0, sample_rate):
    """Sum of cos(k * phase) over the harmonics below the ceiling; the top one fades in and out."""
    harmonics = np.maximum(HARMONIC_CEILING * sample_rate / 2.0 / f0 - 1.0, 1.0)
    whole, fraction = np.floor(harmonics), harmonics - np.floor(harmonics)
    half_sine = np.sin(phase / 2.0)
    at_pulse = np.abs(half_sine) < 1e-9
    # Dirichlet kernel: sum_{k=1..K} cos(k x) = sin((K + 1/2) x) / (2 sin(x / 2)) - 1/2
    comb = np.sin((whole + 0.5) * phase) / (2.0 * np.where(at_pulse, 1.0, half_sine)) - 0.5
    return np.where(at_pulse, whole, comb) + fraction * np.cos((whole + 1.0) * phase)


def glottal_cycles(f0, voice, sample_rate, rng):
    """Cumulative glottal cycles per sample, with the speaker's jitter (one draw per period)."""
    cycles = np.cumsum(f0) / sample_rate
    jitter = 1.0 + voice.jitter * rng.standard_normal(int(cycles[-1]) + 2)
    return np.cumsum(f0 * jitter[cycles.astype(int)]) / sample_rate


def resonance(freqs, centre, bandwidth):
    """Magnitude of a two-pole resonator with unit gain at 0 Hz (a formant, cascaded)."""
    pole = centre ** 2 + (bandwidth / 2.0) ** 2
    return pole / np.sqrt((pole - freqs ** 2) ** 2 + (bandwidth * freqs) ** 2)


def band_pass(freqs, centre, bandwidth):
    """Magnitude of a two-pole band-pass with unit gain at its centre (a noise band)."""
    pole = centre ** 2 + (bandwidth / 2.0) ** 2
    return bandwidth * freqs / np.sqrt((pole - freqs ** 2) ** 2 + (bandwidth * freqs) ** 2)


def vocal_tract(freqs, formants, nasal, voice):
    """Gain (frames, bins) of vocal tract and nasal branch; formants is (frames, 4), nasal (frames, 1)."""
    first, spacing = np.array(HIGHER_FORMANTS_HZ) * voice.formant_scale
    higher = np.arange(first, HIGHER_FORMANTS_REACH * freqs.max() + spacing, spacing)
    base, share = FORMANT_BANDWIDTH
    gain = 1.0
    for centre in [*formants.T[:, :, None], *higher]:
        gain = gain * resonance(freqs, centre, voice.bandwidth_scale * (base + share * centre))
    # The nasal branch adds a low pole and a zero; its strength is the coupling
    coupling = voice.nasality + nasal
    pole = band_pass(freqs, NASAL_POLE_HZ[0] * voice.formant_scale, NASAL_POLE_HZ[1])
    zero = band_pass(freqs, voice.nasal_zero * voice.formant_scale, NASAL_ZERO_BANDWIDTH_HZ)
    return gain * (1.0 + coupling * pole) / (1.0 + coupling * zero)


def glottal_source(freqs, voice):
    """Spectral envelope of the glottal flow: roll-off above the corner and the speaker's tilt."""
    roll_off = 1.0 / (1.0 + (freqs / voice.glottal_corner) ** 2)
    return roll_off * (1.0 + freqs / 1000.0) ** -voice.tilt


def sources(tracks, f0_ms, voice, sample_rate, rng):
    """The excitations, shape (3, samples): voicing, aspiration noise and frication noise."""
    length_ms = len(f0_ms)
    sample_ms = np.arange(int(length_ms * sample_rate / 1000)) * (1000.0 / sample_rate)
    grid = np.arange(length_ms)
    voice_level, aspiration_level, frication_level = (
        np.interp(sample_ms, grid, tracks[name]) for name in ("voice", "aspiration", "frication"))
    f0 = np.interp(sample_ms, grid, f0_ms)
    cycles = glottal_cycles(f0, voice, sample_rate, rng)
    phase = 2.0 * np.pi * (cycles % 1.0)
    # Shimmer changes the gain halfway between pulses, where the comb is quiet
    shimmer = 1.0 + voice.shimmer * rng.standard_normal(int(cycles[-1]) + 2)[(cycles + 0.5).astype(int)]
    voicing = harmonic_comb(phase, f0, sample_rate) * shimmer * voice_level
    # Noise has the same spectral density at every sample rate; breath noise pulses with the glottis
    noise = rng.standard_normal((2, len(sample_ms))) * np.sqrt(sample_rate / REFERENCE_RATE)
    breath = voice.breathiness * voice_level * (0.5 + 0.5 * np.cos(phase))
    return np.stack([voicing, noise[0] * (aspiration_level + breath), noise[1] * frication_level])


def short_time_spectra(signals, hop):
    """Spectra (..., frames, bins) of Hann-windowed frames (OVERLAP per sample), and the frames' centres."""
    size, lead = OVERLAP * hop, (OVERLAP - 1) * hop
    padding = [(0, 0)] * (signals.ndim - 1) + [(lead, lead + (-signals.shape[-1]) % hop)]
    frames = sliding_window_view(np.pad(signals, padding), size, axis=-1)[..., ::hop, :]
    centres = np.arange(frames.shape[-2]) * hop - lead + size / 2  # in samples of the signal
    return np.fft.rfft(frames * _hann(size), axis=-1), centres


def overlap_add(spectra, hop, length):
    """The signal (`length` samples) of short_time_spectra, after the spectra were filtered."""
    size, lead = OVERLAP * hop, (OVERLAP - 1) * hop
    window = _hann(size)
    chunks = (np.fft.irfft(spectra, n=size, axis=-1) * window).reshape(len(spectra), OVERLAP, hop)
    signal = np.zeros((len(spectra) + OVERLAP - 1, hop))
    for k in range(OVERLAP):
        signal[k:k + len(spectra)] += chunks[:, k]
    # The squared windows of the frames overlapping any one sample sum to the same constant
    return signal.reshape(-1)[lead:lead + length] * hop / np.sum(window ** 2)


def _hann(size):
    """Periodic Hann window."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / size)


def synthesize(tracks, f0_ms, voice, sample_rate, rng):
    """Render the control tracks to a waveform (float, arbitrary scale)."""
    excitation = sources(tracks, f0_ms, voice, sample_rate, rng)
    hop = max(1, round(FRAME_S * sample_rate / OVERLAP))
    spectra, centres = short_time_spectra(excitation, hop)
    frame_ms, grid = centres * (1000.0 / sample_rate), np.arange(len(f0_ms))
    nasal, noise_centre, noise_bandwidth = (np.interp(frame_ms, grid, tracks[name])[:, None]
                                            for name in ("nasal", "noise_centre", "noise_bandwidth"))
    formants = np.stack([np.interp(frame_ms, grid, track) for track in tracks["formants"].T], axis=1)
    freqs = np.fft.rfftfreq(OVERLAP * hop, 1.0 / sample_rate)[None, :]
    # Radiation at the lips differentiates everything that leaves the mouth (+6 dB/octave)
    tract = vocal_tract(freqs, formants, nasal, voice) * (freqs / 1000.0)
    # Squared: a fricative's noise falls off steeply below its band, as behind a narrow constriction
    noise_band = band_pass(freqs, noise_centre, noise_bandwidth) ** 2
    filtered = (spectra[0] * tract * glottal_source(freqs, voice)
                + spectra[1] * tract * ASPIRATION_GAIN
                + spectra[2] * noise_band * FRICATION_GAIN)
    return overlap_add(filtered, hop, excitation.shape[1])


def render_utterance(voice, speaker_index, number, seed, sample_rate, with_audio=True):
    """(text, 16-bit samples or None) of one utterance; the text is drawn before any audio."""
    rng = np.random.default_rng([seed, 1, speaker_index, number])
    voice = utterance_variant(voice, rng)
    words = draw_words(rng)
    text = spell(words)
    if not with_audio:
        return text, None
    tracks = control_tracks(utterance_segments(words, voice, rng))
    waveform = synthesize(tracks, intonation(tracks, voice, rng), voice, sample_rate, rng)
    peak = rng.uniform(*PEAK_RANGE)
    waveform *= peak / np.max(np.abs(waveform))
    floor = peak * 10.0 ** (-rng.uniform(*NOISE_FLOOR_DB) / 20.0)
    waveform += floor * rng.standard_normal(len(waveform))
    return text, np.round(waveform * INT16_SCALE).astype(np.int16)


# ----------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------
def speaker_id(speaker_index):
    """VCTK-style speaker id of the k-th speaker (0-based): p225, p226, ..."""
    return f"p{FIRST_SPEAKER_NUMBER + speaker_index}"


def utterance_paths(root, layout, speaker_index, number):
    """(audio path, text path) of one utterance (numbers start at 1)."""
    speaker, spec = speaker_id(speaker_index), LAYOUTS[layout]
    stem = f"{speaker}_{number:03d}"
    audio = Path(root) / spec.audio_folder / speaker / f"{stem}{spec.name_suffix}.{spec.extension}"
    return audio, Path(root) / TEXT_FOLDER / speaker / f"{stem}.txt"


def _write_atomically(path, write):
    """Call write(temporary path) next to `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with utils.atomic_path(path) as partial:
        write(partial)


def _speaker_info(voices):
    """Text of speaker-info.txt, VCTK style."""
    lines = [SPEAKER_INFO_HEADER]
    lines += [f"{speaker_id(k)}  {voice.age}  {voice.gender}  Synthetic  Demo"
              for k, voice in enumerate(voices)]
    return "\n".join(lines) + "\n"


def _write_utterance(root, layout, voice, speaker_index, number, seed, sample_rate):
    """Write one utterance's audio and text, each unless it exists already."""
    audio_path, text_path = utterance_paths(root, layout, speaker_index, number)
    if audio_path.exists() and text_path.exists():
        return
    text, samples = render_utterance(voice, speaker_index, number, seed, sample_rate,
                                     with_audio=not audio_path.exists())
    if samples is not None:
        file_format = LAYOUTS[layout].file_format
        _write_atomically(audio_path, lambda path: sf.write(path, samples, sample_rate, format=file_format,
                                                            subtype="PCM_16"))
    if not text_path.exists():
        _write_atomically(text_path, lambda path: path.write_text(text + "\n"))


RECORD_FILE = "demo-corpus.json"  # the settings that decide what each file holds


def _claim(root, made_with, info):
    """Refuse to add files to a folder holding a corpus made with another seed, sample rate or layout (one voice
    per speaker and one rate per corpus), or to a folder that holds something else; record `made_with` first.
    A demo corpus from before the record (its speaker-info.txt is what this seed writes) is adopted."""
    record_path = root / RECORD_FILE
    if record_path.exists():
        recorded = utils.read_json(record_path, what="the demo corpus's record of its settings",
                                   fix=f"Write the demo corpus again into an empty folder (remove {root})")
        differ = {k: (recorded.get(k), v) for k, v in made_with.items() if recorded.get(k) != v}
        if differ:
            raise utils.PipelineError(
                f"{root} holds a demo corpus made with " + ", ".join(f"{k} {a}" for k, (a, _) in differ.items())
                + " (now " + ", ".join(f"{k} {b}" for k, (_, b) in differ.items()) + "): files of both would "
                f"mix in one corpus; write it into another folder, or remove {root} first")
        return
    info_path = root / SPEAKER_INFO_FILE
    holds = root.exists() and any(p.name != ".lock" for p in root.iterdir())
    if holds and not (info_path.exists() and _first_lines_match(info_path.read_text(), info)):
        raise utils.PipelineError(f"{root} is not empty and holds no demo corpus of these settings: write the "
                                  f"demo corpus into an empty or new folder")
    root.mkdir(parents=True, exist_ok=True)
    utils.write_json(record_path, made_with)


def _first_lines_match(written, info):
    """Whether two speaker-info texts agree on the speakers both list (a corpus may have been written smaller)."""
    a, b = written.splitlines(), info.splitlines()
    return a[:min(len(a), len(b))] == b[:min(len(a), len(b))]


def _setting(value, name):
    """`value`, or constants.<name> when it is None (read at call time, so it can be patched)."""
    return getattr(constants, name) if value is None else value


def write_demo_corpus(root, num_speakers=None, utterances_per_speaker=None, sample_rate=None,
                      layout=None, seed=None, progress=True):
    """Write the synthetic corpus under `root` (existing files are kept, so a run resumes); return root."""
    num_speakers = _setting(num_speakers, "DEMO_NUM_SPEAKERS")
    utterances = _setting(utterances_per_speaker, "DEMO_UTTERANCES_PER_SPEAKER")
    sample_rate = _setting(sample_rate, "DEMO_SAMPLE_RATE")
    layout = _setting(layout, "DEMO_LAYOUT")
    seed = _setting(seed, "DEMO_SEED")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if min(num_speakers, utterances, sample_rate) < 1 or seed < 0:
        raise ValueError("speakers, utterances and sample rate must be positive, the seed non-negative")
    root = Path(root)
    if root.exists():
        utils.remove_stale_temporaries(root)  # left by an interrupted run
    voices = [draw_voice(np.random.default_rng([seed, 0, k])) for k in range(num_speakers)]
    _claim(root, {"seed": seed, "sample_rate": sample_rate, "layout": layout}, _speaker_info(voices))
    with utils.progress(total=num_speakers * utterances, desc="demo corpus", unit="utt", disable=not progress) as bar:
        for k, voice in enumerate(voices):
            for number in range(1, utterances + 1):
                _write_utterance(root, layout, voice, k, number, seed, sample_rate)
                bar.update()
    # Written last, so that its presence means the corpus is complete; rewritten only if it changed
    info_path, info = root / SPEAKER_INFO_FILE, _speaker_info(voices)
    if not info_path.exists() or info_path.read_text() != info:
        _write_atomically(info_path, lambda path: path.write_text(info))
    return root


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------
def _help(text, name):
    """An option's help text, naming the constant that gives its default."""
    return f"{text} Default: constants.{name} ({getattr(constants, name)})."


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--speakers", type=click.IntRange(min=1), default=None,
              help=_help("Speakers.", "DEMO_NUM_SPEAKERS"))
@click.option("--utterances", type=click.IntRange(min=1), default=None,
              help=_help("Utterances per speaker.", "DEMO_UTTERANCES_PER_SPEAKER"))
@click.option("--sample-rate", type=click.IntRange(min=1), default=None,
              help=_help("Hz of the files.", "DEMO_SAMPLE_RATE"))
@click.option("--layout", type=click.Choice(list(LAYOUTS)), default=None,
              help=_help("VCTK release to imitate.", "DEMO_LAYOUT"))
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help=_help("The same seed writes the same bytes.", "DEMO_SEED"))
@utils.friendly_errors
def main(out_dir, speakers, utterances, sample_rate, layout, seed):
    """Write a synthetic VCTK-shaped corpus to OUT_DIR (files already there are kept)."""
    utils.print_overrides()
    root = write_demo_corpus(out_dir, speakers, utterances, sample_rate, layout, seed)
    speakers = _setting(speakers, "DEMO_NUM_SPEAKERS")
    utterances = _setting(utterances, "DEMO_UTTERANCES_PER_SPEAKER")
    layout = _setting(layout, "DEMO_LAYOUT")
    seconds = sum(sf.info(utterance_paths(root, layout, k, number)[0]).duration
                  for k in range(speakers) for number in range(1, utterances + 1))
    click.echo(f"demo corpus: {speakers} speakers, {speakers * utterances} utterances, "
               f"{seconds:.1f} s of audio in {root}")


if __name__ == "__main__":
    main()
