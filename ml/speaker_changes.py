"""Speaker change detection with the trained window embeddings, its evaluation on synthetic conversations, and
the delta-BIC baseline it is compared with.

    from ml.speaker_changes import ChangeDetector
    detector = ChangeDetector()                 # the default run's model and its tuned threshold
    found = detector.detect("meeting.wav")      # found.changes (s), found.segments(), found.rttm("meeting")

A recording's MFCC frames are computed over the whole file (its time axis kept: no trim), a window embedding
every CHANGE_EMBED_HOP_FRAMES frames, and a frame is voiced when its energy is within CHANGE_VAD_DB of the loud
frames. At candidate points CHANGE_HOP_S apart, the unit window embeddings of the voiced windows within
CHANGE_WINDOW_S on each side are averaged; the curve is the cosine distance of the two averages (0 where a side
has less than CHANGE_MIN_VOICED_S of voice: no candidate). Its highest points of at least the threshold, each at least
CHANGE_MIN_SEGMENT_S from the others and from the ends, are the changes. With CHANGE_CURVE "contrast" the curve is
that distance less the mean distance between the halves of each side (a self-normalised step). With
CHANGE_MERGE_REACH_S > 0 every peak is a candidate, and candidates are merged away weakest first, each scored over
its whole adjacent segments (up to that reach), until the weakest scores at least the threshold (merge_strengths).
With CHANGE_CLUSTER_WEIGHT > 0 the segments between candidates are also clustered over the whole recording, and a
candidate's strength adds how far apart its two segments' clusters stay (cluster_strengths): a speaker heard
earlier in the recording is recognised again, with more of its speech than one side holds.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import constants
import utils
from audio import features
from ml import change_metrics

CHANGE_SETTINGS = ("CHANGE_WINDOW_S", "CHANGE_CURVE", "CHANGE_MERGE_REACH_S", "CHANGE_CLUSTER_WEIGHT",
                   "CHANGE_CLUSTER_SEGMENTS", "CHANGE_HOP_S", "CHANGE_EMBED_HOP_FRAMES", "CHANGE_MIN_SEGMENT_S",
                   "CHANGE_MIN_VOICED_S", "CHANGE_VAD_DB", "CHANGE_VAD_QUANTILE")
# What `evaluate` depends on besides the model: its report is refused (without --force) when one differs. The corpus
# is pinned by the inputs' cache and the report's corpus_audio_digest, not by how its path is spelt.
EVALUATION_SETTINGS = CHANGE_SETTINGS + ("CONVERSATIONS", "CONVERSATION_SPEAKERS", "CONVERSATION_TURNS",
                                         "CONVERSATION_UTTERANCES_PER_TURN", "CONVERSATION_TUNING_LONG_TURNS",
                                         "CONVERSATION_PAUSE_S",
                                         "CONVERSATION_NOISE", "CHANGE_COLLARS_S", "BIC_PENALTY", "SEED", "SPLIT",
                                         "NUM_SPEAKERS_CLASSIFICATION_TASK")
REPORT = "speaker_changes.json"
EXAMPLE = "speaker_changes_1.wav"  # the first test conversation, written by `evaluate` beside its plot
CHUNK_WINDOWS = 2048  # windows per forward pass: 2048 costs ~250 MB less peak memory than 8192, ~0.1 s more per 10 min
THRESHOLD_QUANTILES = np.linspace(0.5, 0.999, 200)  # thresholds tried when tuning: quantiles of the curves


# ----------------------------------------------------------------------------------------------------
# Curves
# ----------------------------------------------------------------------------------------------------
@dataclass
class Track:
    """The voiced unit window embeddings of a recording, summed cumulatively: the sum over any span in O(1)."""
    positions: np.ndarray  # (windows,) centre time of each window (s), ascending
    cumulative: np.ndarray  # (windows + 1, size + 1) float64: running sums of [embedding x voiced, voiced]

    @classmethod
    def of(cls, positions, vectors, voiced):
        """The track of unit `vectors` at `positions`, counting those whose `voiced` is true (one array, no
        temporary copies: it is the largest one a long recording needs)."""
        count, size = vectors.shape
        cumulative = np.zeros((count + 1, size + 1))
        weights = np.asarray(voiced, np.float64)
        np.multiply(vectors, weights[:, None], out=cumulative[1:, :size])
        cumulative[1:, size] = weights
        np.cumsum(cumulative[1:], axis=0, out=cumulative[1:])
        return cls(np.asarray(positions), cumulative)

    def sums(self, starts, ends):
        """(spans, size + 1): per span [start, end) the sum of its voiced embeddings, then their count."""
        first, last = (np.searchsorted(self.positions, np.asarray(t, float), side="left") for t in (starts, ends))
        return self.cumulative[last] - self.cumulative[first]


def cosine_distance(a, b, counts_a, counts_b):
    """1 - cosine of the rows of two sums; -inf (never a change) where a side has fewer than min_windows()
    voiced windows."""
    cosine = np.einsum("ij,ij->i", a, b) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    need = min_windows()
    return np.where((counts_a >= need) & (counts_b >= need), 1 - cosine, -np.inf)


def min_windows():
    """Voiced windows a side needs to count: CHANGE_MIN_VOICED_S of them, at least one."""
    return max(constants.CHANGE_MIN_VOICED_S / (constants.CHANGE_EMBED_HOP_FRAMES * constants.FRAME_STEP_S), 1)


@dataclass
class Curve:
    """A change curve: one value per candidate point (seconds), higher = more likely a change."""
    times: np.ndarray
    values: np.ndarray
    duration: float
    track: Track = None  # the window embeddings it came from (embedding curves only)
    ranked: tuple = None  # ranked_changes(curve), kept when the track is dropped


def recording(path):
    """The samples of `path` at SAMPLE_RATE, checked to be long and loud enough for change detection."""
    try:
        signal = features.load_audio(path)
    except features.UnusableAudio as reason:
        raise utils.PipelineError(f"{path}: {reason}") from None
    check_recording(signal, path)
    return signal


def check_recording(signal, name):
    """PipelineError naming `name` when `signal` is all-silent or shorter than two CHANGE_WINDOW_S windows."""
    duration = len(signal) / constants.SAMPLE_RATE
    need = 2 * constants.CHANGE_WINDOW_S
    if duration < need:
        raise utils.PipelineError(f"{name}: too short for change detection ({duration:.2f} s; at least {need:g} s "
                                  f"needed, two CHANGE_WINDOW_S = {constants.CHANGE_WINDOW_S:g} s windows)")
    peak = float(np.abs(signal).max())
    if peak < constants.SILENCE_PEAK:
        raise utils.PipelineError(f"{name}: all-silent (peak {peak:.1e} < SILENCE_PEAK {constants.SILENCE_PEAK})")


def voiced_frames(frames, db=None):
    """Per frame, whether its energy (c0, the log energy) is within `db` (default CHANGE_VAD_DB) of the loud
    frames'."""
    energy = frames[:, 0]
    loud = np.quantile(energy, constants.CHANGE_VAD_QUANTILE)
    return energy >= loud - (constants.CHANGE_VAD_DB if db is None else db) * np.log(10) / 10


def candidate_points(duration):
    """Candidate change times: every CHANGE_HOP_S, strictly inside the recording."""
    return np.arange(constants.CHANGE_HOP_S, duration - constants.CHANGE_HOP_S / 2, constants.CHANGE_HOP_S)


def window_track(model, frames, norm):
    """(first frame of each window, unit embeddings (windows, size) float32): a window every
    CHANGE_EMBED_HOP_FRAMES frames, embedded CHUNK_WINDOWS at a time (no copy of every window at once)."""
    from ml.embeddings import normalized_frames, unit_length
    normalized = normalized_frames(frames, norm)
    starts = features.window_starts(len(frames), hop=constants.CHANGE_EMBED_HOP_FRAMES)
    vectors = np.empty((len(starts), model.get_layer("embeddings").output.shape[-1]), np.float32)
    for i in range(0, len(starts), CHUNK_WINDOWS):
        windows = features.gather_windows(normalized, starts[i:i + CHUNK_WINDOWS])
        vectors[i:i + CHUNK_WINDOWS] = unit_length(np.asarray(model(windows, training=False)["embeddings"]))
    return starts, vectors


def window_centres(starts, frames_per_window=None):
    """Time (s) of the middle of windows starting at frames `starts`."""
    frames_per_window = frames_per_window or constants.FRAMES_PER_WINDOW
    length, step = features.frame_geometry()
    middle_sample = np.asarray(starts) * step + ((frames_per_window - 1) * step + length) / 2
    return middle_sample / constants.SAMPLE_RATE


def embedding_curve(track, duration):
    """The cosine distance of the mean voiced window embeddings left and right of every candidate point; with
    CHANGE_CURVE "contrast", less the mean cosine distance between the halves of each side."""
    points = candidate_points(duration)
    width = constants.CHANGE_WINDOW_S
    values = np.zeros(len(points))
    for i in range(0, len(points), CHUNK_WINDOWS):  # a block of points at a time: no (points, size) arrays
        block = points[i:i + CHUNK_WINDOWS]
        values[i:i + CHUNK_WINDOWS] = side_distance(track, block - width, block, block + width)
    return Curve(points, values, duration, track)


def half_distance(track, starts, ends):
    """The cosine distance between the first and second halves of each span (0 where a half has no voiced window:
    no spread measured)."""
    middle = (starts + ends) / 2
    first, second = track.sums(starts, middle), track.sums(middle, ends)
    everywhere = np.full(len(starts), np.inf)
    distance = cosine_distance(first[:, :-1], second[:, :-1], everywhere, everywhere)
    return np.where((first[:, -1] > 0) & (second[:, -1] > 0), distance, 0.0)


def bic_curve(frames, voiced, duration):
    """The delta-BIC of one full-covariance Gaussian against two, over the static MFCCs of the voiced frames
    within CHANGE_WINDOW_S on each side of every candidate point (0 where a side has too few frames)."""
    x = frames[voiced, :constants.NUM_MFCC].astype(np.float64)
    times = window_centres(np.flatnonzero(voiced), frames_per_window=1)
    d = x.shape[1]
    values = np.concatenate([np.ones((len(x), 1)), x, (x[:, :, None] * x[:, None, :]).reshape(len(x), -1)], axis=1)
    points = candidate_points(duration)
    frames_track = Track(times, np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)]))
    width = constants.CHANGE_WINDOW_S
    left, right = frames_track.sums(points - width, points), frames_track.sums(points, points + width)
    need = max(constants.CHANGE_MIN_VOICED_S / constants.FRAME_STEP_S, d + 2)

    def log_det(sums):
        n = np.maximum(sums[:, 0], 1)
        mean = sums[:, 1:d + 1] / n[:, None]
        covariance = sums[:, d + 1:].reshape(-1, d, d) / n[:, None, None] - mean[:, :, None] * mean[:, None, :]
        covariance += 1e-6 * np.eye(d)
        return n, np.linalg.slogdet(covariance)[1]

    (n1, det1), (n2, det2), (n, det) = log_det(left), log_det(right), log_det(left + right)
    penalty = constants.BIC_PENALTY * 0.5 * (d + d * (d + 1) / 2) * np.log(n)
    delta = 0.5 * (n * det - n1 * det1 - n2 * det2) - penalty
    return Curve(points, np.where((left[:, 0] >= need) & (right[:, 0] >= need), delta, -np.inf), duration)


# ----------------------------------------------------------------------------------------------------
# Peaks
# ----------------------------------------------------------------------------------------------------
def peaks(curve):
    """(times, values) of the curve's changes before any threshold, highest first: a point is kept when it is
    the curve's maximum within CHANGE_MIN_SEGMENT_S on both sides (a local peak, not the shoulder of a broad
    one), no higher kept point lies that close (ties), and it is at least that far from both ends.

    Keeping points highest first, a threshold only cuts this list: the changes at threshold t are the peaks
    whose value is at least t (so a threshold is tuned without picking peaks again).
    """
    gap = constants.CHANGE_MIN_SEGMENT_S
    if len(curve.times) == 0:
        return np.zeros(0), np.zeros(0)
    values = np.where(np.isfinite(curve.values), curve.values, -np.inf)
    reach = max(int(np.ceil(gap / constants.CHANGE_HOP_S - 1e-9)) - 1, 0)  # points less than `gap` away
    padded = np.pad(values, reach, constant_values=-np.inf)
    local_peak = values >= np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1).max(axis=1)
    inside = (curve.times >= gap) & (curve.times <= curve.duration - gap) & np.isfinite(curve.values) & local_peak
    order = np.flatnonzero(inside)[np.argsort(-curve.values[inside], kind="stable")]
    blocked = np.zeros(len(curve.times), bool)
    kept = []
    for index in order:
        if blocked[index]:
            continue
        kept.append(index)
        time = curve.times[index]  # block the points less than `gap` away
        blocked[np.searchsorted(curve.times, time - gap + 1e-9):np.searchsorted(curve.times, time + gap - 1e-9)] = True
    kept = np.asarray(kept, int)
    return curve.times[kept], curve.values[kept]


def ranked_changes(curve):
    """(times, strengths) of the curve's candidate changes: a change is kept at threshold t when its strength is at
    least t. Without merging (CHANGE_MERGE_REACH_S = 0, or a curve without embeddings, as delta-BIC's): its peaks.
    With merging: every peak is a candidate, and the candidates are merged away weakest first (merge_strengths).
    With CHANGE_CLUSTER_WEIGHT w > 0 (embedding curves): (that strength + w x cluster_strengths) / (1 + w), the
    local evidence and the whole recording's."""
    if curve.track is None:
        return peaks(curve)
    times, values = peaks(curve)
    order = np.argsort(times, kind="stable")
    times, strengths = times[order], values[order]
    if constants.CHANGE_MERGE_REACH_S > 0:
        strengths = merge_strengths(curve.track, times, curve.duration)
    weight = constants.CHANGE_CLUSTER_WEIGHT
    if weight > 0 and len(times):
        strengths = (strengths + weight * cluster_strengths(curve.track, times, curve.duration, strengths)) / (1 + weight)
    return times, strengths


def cluster_strengths(track, times, duration, local):
    """Per candidate change (sorted `times`), how far apart the speakers on its two sides stay when the segments
    between candidates are clustered over the whole recording: the recording's other turns of the same speakers
    help decide (a speaker heard before is recognised again).

    Segments with fewer voiced windows than a side needs are first joined to a neighbour, across the candidate
    weaker by `local` (those candidates get -inf: never a change). The segments are then clustered bottom-up, the
    two closest clusters joined first, a cluster's distance to another the mean cosine distance of their segments'
    mean embeddings (average linkage). A candidate's strength is the largest joining distance up to the join that
    puts its two segments in one cluster: the candidates kept at threshold t are those whose segments are still
    apart when every join below t is made. Recordings of more than CHANGE_CLUSTER_SEGMENTS segments are clustered in
    overlapping blocks of that many (half a block apart), each candidate scored in the block it lies nearest the
    middle of: memory and time per block stay bounded however long the recording.
    """
    times = np.asarray(times, float)
    strengths = np.full(len(times), -np.inf)
    keep = list(range(len(times)))
    need = min_windows()
    while True:
        edges = np.concatenate([[0.0], times[keep], [duration]])
        sums = track.sums(edges[:-1], edges[1:])
        weak = np.flatnonzero(sums[:, -1] < need)
        if len(weak) == 0 or not keep:
            break
        options = [j for j in (weak[0] - 1, weak[0]) if 0 <= j < len(keep)]
        del keep[min(options, key=lambda j: local[keep[j]])]
    if not keep:
        return strengths
    means = sums[:, :-1] / sums[:, -1:]
    count, block = len(means), constants.CHANGE_CLUSTER_SEGMENTS
    starts = [0] if count <= block else sorted(set(range(0, count - block, block // 2)) | {count - block})
    centres = np.asarray(starts) + min(block, count) / 2
    nearest = np.abs(np.arange(count - 1)[:, None] + 1 - centres[None, :]).argmin(axis=1)  # boundary j: after segment j
    kept = np.empty(count - 1)
    for k, first in enumerate(starts):
        mine = np.flatnonzero(nearest == k)
        if len(mine):
            kept[mine] = _average_linkage_strengths(means[first:first + block])[mine - first]
    strengths[keep] = kept
    return strengths


def _average_linkage_strengths(means):
    """Per boundary between consecutive rows of `means` (segments), the running maximum of the joining distances
    of average-linkage clustering (cosine distances) up to the join that puts its two segments in one cluster."""
    count = len(means)
    if count < 2:
        return np.zeros(0)
    unit = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    distance = 1 - unit @ unit.T
    np.fill_diagonal(distance, np.inf)
    sizes = np.ones(count)
    label = np.arange(count)
    found, highest = np.full(count - 1, np.nan), -np.inf
    for _ in range(count - 1):
        a, b = np.unravel_index(np.argmin(distance), distance.shape)
        a, b = min(a, b), max(a, b)
        highest = max(highest, distance[a, b])
        joined = np.isnan(found) & (np.minimum(label[:-1], label[1:]) == a) & (np.maximum(label[:-1], label[1:]) == b)
        found[joined] = highest
        merged = (sizes[a] * distance[a] + sizes[b] * distance[b]) / (sizes[a] + sizes[b])  # Lance-Williams
        distance[a], distance[:, a] = merged, merged
        distance[a, a] = np.inf
        distance[b], distance[:, b] = np.inf, np.inf
        sizes[a] += sizes[b]
        label[label == b] = a
    return found


def merge_strengths(track, times, duration):
    """Per candidate change, the threshold below which merging keeps it.

    A candidate's score is the curve's value (CHANGE_CURVE) computed over its two adjacent segments, from the
    candidate before it to the one after (each side at most CHANGE_MERGE_REACH_S): longer than the curve's windows
    where turns are long, so more reliable. Merging removes the lowest-scoring candidate and scores its neighbours
    again over their grown segments, until none is left; at threshold t it stops at the first score of at least t.
    So a candidate is kept at t exactly when t <= the highest score removed up to and including its own removal:
    that running maximum is its strength, and any threshold is applied without merging again.
    """
    reach, count = constants.CHANGE_MERGE_REACH_S, len(times)
    alive = list(range(count))
    strengths, highest = np.empty(count), -np.inf

    def score(k):  # k: position in `alive`
        before = times[alive[k - 1]] if k > 0 else 0.0
        after = times[alive[k + 1]] if k + 1 < len(alive) else duration
        at = times[alive[k]]
        start, end = np.array([max(before, at - reach)]), np.array([min(after, at + reach)])
        return float(side_distance(track, start, np.array([at]), end)[0])

    scores = [score(k) for k in range(count)]
    while alive:
        k = int(np.argmin(scores))
        highest = max(highest, scores[k])
        strengths[alive[k]] = highest
        del alive[k], scores[k]
        for neighbour in (k - 1, k):
            if 0 <= neighbour < len(alive):
                scores[neighbour] = score(neighbour)
    return strengths


def side_distance(track, starts, middles, ends):
    """The curve's value (CHANGE_CURVE) between the spans [starts, middles) and [middles, ends): the cosine distance
    of their mean voiced embeddings (-inf where a side has too few voiced windows), with "contrast" less the mean
    distance between the halves of each span."""
    left, right = track.sums(starts, middles), track.sums(middles, ends)
    values = cosine_distance(left[:, :-1], right[:, :-1], left[:, -1], right[:, -1])
    if constants.CHANGE_CURVE == "contrast":
        values = values - (half_distance(track, starts, middles) + half_distance(track, middles, ends)) / 2
    return values


def changes_at(peak_list, threshold):
    """The sorted change times of `peaks(curve)` (or `ranked_changes(curve)`) at `threshold`."""
    times, values = peak_list
    return np.sort(times[values >= threshold])


def segments(changes, duration):
    """[(start, end)] of the segments between consecutive changes, covering [0, duration]."""
    edges = change_metrics.boundaries(changes, duration)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


@dataclass
class Detection:
    """The changes found in one recording, with the curve they came from."""
    name: str
    curve: Curve
    threshold: float
    changes: np.ndarray = field(default=None)
    file_id: str = None  # its RTTM file id (default: the file's stem)

    @property
    def duration(self):
        return self.curve.duration

    def segments(self):
        return segments(self.changes, self.duration)

    def rttm(self, file_id=None):
        """One RTTM line per segment ("SPEAKER <file> 1 <onset> <duration> <NA> <NA> segment_<k> <NA> <NA>");
        segments are numbered in order: detection says where the speaker changes, not who speaks."""
        file_id = (file_id or self.file_id or Path(self.name).stem).replace(" ", "_")
        return [f"SPEAKER {file_id} 1 {start:.3f} {end - start:.3f} <NA> <NA> segment_{k + 1:03d} <NA> <NA>"
                for k, (start, end) in enumerate(self.segments())]

    def as_dict(self):
        return {"file": self.name, "duration_s": round(self.duration, 3), "threshold": self.threshold,
                "changes_s": [round(float(t), 3) for t in self.changes],
                "segments": [{"start_s": round(s, 3), "end_s": round(e, 3)} for s, e in self.segments()]}


class ChangeDetector:
    """A trained model (as ml.inference.Speakers loads it) used to find speaker changes in recordings.

    The threshold is the one `python ml/4_detect_speaker_changes.py evaluate` tuned for this checkpoint (stored
    in its evaluation folder), unless one is given.
    """

    def __init__(self, run=None, checkpoint=None, threshold=None, trained=None):
        from ml.inference import label_free_model
        self.trained = trained or label_free_model(run, checkpoint)
        self.model, self.norm, self.source = self.trained.model, self.trained.norm, self.trained.description
        self._threshold = threshold

    def threshold(self):
        """The given threshold, else the one tuned for this checkpoint; PipelineError before any."""
        if self._threshold is not None:
            return self._threshold
        report = self.trained.evaluation_report(REPORT, "speaker-change evaluation",
                                                "python ml/4_detect_speaker_changes.py evaluate",
                                                keys={"checkpoint": dict, "threshold": utils.NUMBER})
        tuned = report.get("settings") or {}
        changed = [n for n in CHANGE_SETTINGS if tuned.get(n) != utils.json_value(getattr(constants, n))]
        if changed:  # a threshold tuned for other curves would silently mean something else
            raise utils.PipelineError(
                f"the change threshold of {self.source} was tuned with other settings ("
                + ", ".join(f"{n} = {utils.shown_value(tuned.get(n))}, now {utils.shown_value(getattr(constants, n))}"
                            for n in changed)
                + f"): restore them, tune again with `python ml/4_detect_speaker_changes.py evaluate --run "
                  f"{self.trained.mode} --force`, or give --threshold")
        return float(report["threshold"])

    def curve(self, signal, name="the recording", frames=None):
        """The change curve of a signal at SAMPLE_RATE (checked first); `frames`: its MFCC frames, when made already."""
        check_recording(signal, name)
        frames = features.mfcc_frames_in_blocks(signal) if frames is None else frames
        voiced = voiced_frames(frames)
        starts, vectors = window_track(self.model, frames, self.norm)
        track = Track.of(window_centres(starts), vectors, window_voicing(voiced, starts))
        return embedding_curve(track, len(signal) / constants.SAMPLE_RATE)

    def detect(self, path, threshold=None):
        """The Detection of one audio file."""
        threshold = self.threshold() if threshold is None else threshold
        curve = self.curve(recording(path), str(path))
        ranked = ranked_changes(curve)
        curve.track, curve.ranked = None, ranked  # the track: ~190 MB an hour of audio, not kept once ranked
        return Detection(str(path), curve, threshold, changes_at(ranked, threshold))


def window_voicing(voiced, starts):
    """Whether each window (starting at `starts`) has at least half of its frames voiced."""
    counts = np.concatenate([[0], np.cumsum(voiced)])
    ends = np.minimum(starts + constants.FRAMES_PER_WINDOW, len(voiced))
    return (counts[ends] - counts[starts]) * 2 >= constants.FRAMES_PER_WINDOW


def baseline_curve(signal, frames=None):
    """The delta-BIC curve of a signal (no learned embedding); `frames`: its MFCC frames, when made already."""
    frames = features.mfcc_frames_in_blocks(signal) if frames is None else frames
    return bic_curve(frames, voiced_frames(frames), len(signal) / constants.SAMPLE_RATE)


# ----------------------------------------------------------------------------------------------------
# Synthetic conversations
# ----------------------------------------------------------------------------------------------------
@dataclass
class Conversation:
    """A seeded concatenation of utterances: turns of different speakers, short pauses, no overlap."""
    signal: np.ndarray
    changes: list  # true change times (s): the middle of the pause between two turns
    turns: list  # (start s, end s, speaker) of each turn's speech

    @property
    def duration(self):
        return len(self.signal) / constants.SAMPLE_RATE


def _draw(bounds, rng):
    """An integer uniformly in [from, to] of a from-to setting."""
    return int(rng.integers(bounds[0], bounds[1] + 1))


def conversations(paths_by_speaker, count, seed, skipped=None, per_turn=None):
    """`count` seeded Conversations (a generator) from {speaker: [audio paths]}; speakers with no usable file
    are dropped, and unusable files go into the dict `skipped` as {path: reason}.

    Each: CONVERSATION_SPEAKERS speakers, CONVERSATION_TURNS turns (the next speaker any other one of the
    conversation), `per_turn` (default CONVERSATION_UTTERANCES_PER_TURN) utterances per turn (their voiced part),
    pauses of CONVERSATION_PAUSE_S, background noise of CONVERSATION_NOISE over everything.
    """
    skipped = {} if skipped is None else skipped
    per_turn = per_turn or constants.CONVERSATION_UTTERANCES_PER_TURN
    rng = np.random.default_rng(seed)
    speakers = sorted(s for s, paths in paths_by_speaker.items() if paths)
    if len(speakers) < 2:
        raise utils.PipelineError(f"conversations need at least 2 speakers with audio, not {len(speakers)}")
    rate = constants.SAMPLE_RATE

    def utterance(speaker):
        for _ in range(20):
            path = paths_by_speaker[speaker][rng.integers(len(paths_by_speaker[speaker]))]
            if str(path) in skipped:
                continue
            try:
                return features.voice_only(features.load_audio(path))
            except features.UnusableAudio as reason:
                skipped[str(path)] = str(reason)
        raise utils.PipelineError(f"no usable utterance of {speaker} found in 20 draws (see the skipped files)")

    for _ in range(count):
        chosen = rng.choice(speakers, size=min(_draw(constants.CONVERSATION_SPEAKERS, rng), len(speakers)),
                            replace=False).tolist()
        pieces, turns, changes, position, previous = [], [], [], 0, None
        for turn in range(_draw(constants.CONVERSATION_TURNS, rng)):
            speaker = chosen[rng.integers(len(chosen))] if previous is None else \
                [s for s in chosen if s != previous][rng.integers(len(chosen) - 1)]
            if turn:
                pause = int(rng.uniform(*constants.CONVERSATION_PAUSE_S) * rate)
                changes.append((position + pause / 2) / rate)
                pieces.append(np.zeros(pause, np.float32))
                position += pause
            start = position
            for number in range(_draw(per_turn, rng)):
                if number:
                    pause = int(rng.uniform(*constants.CONVERSATION_PAUSE_S) * rate)
                    pieces.append(np.zeros(pause, np.float32))
                    position += pause
                speech = utterance(speaker)
                pieces.append(speech)
                position += len(speech)
            turns.append((start / rate, position / rate, speaker))
            previous = speaker
        signal = np.concatenate(pieces)
        signal += (constants.CONVERSATION_NOISE * rng.standard_normal(len(signal))).astype(np.float32)
        yield Conversation(signal, changes, turns)


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------
def tune_threshold(curves, truths, collar):
    """The threshold (a quantile of the curves' peak values) with the best pooled F1 at `collar`, and that F1."""
    peak_lists = [_ranked(c) for c in curves]
    values = np.concatenate([v for _, v in peak_lists])
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise utils.PipelineError("no candidate change point in the tuning conversations (all too short or silent)")
    best = (-1.0, float(values.max()))
    for threshold in np.unique(np.quantile(values, THRESHOLD_QUANTILES)):
        counts = [change_metrics.detection_counts(t, changes_at(p, threshold), collar)
                  for p, t in zip(peak_lists, truths)]
        f1 = change_metrics.precision_recall_f1(counts)[2]
        if f1 > best[0]:
            best = (f1, float(threshold))
    return best[1], best[0]


def _ranked(curve):
    """The curve's ranked changes, as kept when its track was dropped (else ranked now)."""
    return curve.ranked if curve.ranked is not None else ranked_changes(curve)


def figures(curves, truths, threshold, collars):
    """{collar: {precision, recall, f1}}, purity and coverage, and the detected changes, of curves at threshold."""
    found = [changes_at(_ranked(c), threshold) for c in curves]
    by_collar = {}
    for collar in collars:
        counts = [change_metrics.detection_counts(t, f, collar) for t, f in zip(truths, found)]
        precision, recall, f1 = change_metrics.precision_recall_f1(counts)
        by_collar[f"{collar:g}"] = {"precision": precision, "recall": recall, "f1": f1}
    sums = [change_metrics.purity_coverage_sums(t, f, c.duration) for t, f, c in zip(truths, found, curves)]
    purity, coverage = change_metrics.purity_coverage(sums)
    return by_collar, purity, coverage, found


def conversation_curves(detector, paths_by_speaker, seed, desc, skipped, keep=0, per_turn=None):
    """(embedding curves, delta-BIC curves, true changes, the first `keep` conversations, seconds spent on the
    embedding curves) of CONVERSATIONS seeded conversations (`per_turn` utterances per turn, as conversations())."""
    import time
    curves, baselines, truths, kept, spent = [], [], [], [], 0.0
    for conversation in utils.progress(conversations(paths_by_speaker, constants.CONVERSATIONS, seed, skipped,
                                                     per_turn),
                                       total=constants.CONVERSATIONS, desc=desc, unit="conversation"):
        start = time.perf_counter()
        frames = features.mfcc_frames_in_blocks(conversation.signal)  # made once, for both detectors
        curve = detector.curve(conversation.signal, "a conversation", frames)
        curve.ranked = ranked_changes(curve)  # part of detection: timed with the curve
        spent += time.perf_counter() - start
        curve.track = None  # 8 MB a conversation: not needed once its changes are ranked
        curves.append(curve)
        baseline = baseline_curve(conversation.signal, frames)
        baseline.ranked = ranked_changes(baseline)
        baselines.append(baseline)
        truths.append(conversation.changes)
        if len(kept) < keep:
            kept.append(conversation)
    return curves, baselines, truths, kept, spent


def tuning_speakers(corpus, inputs):
    """({speaker: [audio paths]}, what they are) to tune the thresholds on, never the unseen speakers: every
    utterance of the validation speakers (held out of training, like the unseen ones) when there are at least
    as many as the largest conversation has (CONVERSATION_SPEAKERS), else the training speakers' test
    utterances."""
    validation = [s for s in inputs.record.get("validation_speakers", []) if corpus.utterances.get(s)]
    if len(validation) >= max(constants.CONVERSATION_SPEAKERS):
        tuning = {s: [u.path for u in corpus.utterances[s]] for s in validation}
        described = "the validation speakers' utterances"
    else:
        test_keys = set(inputs.test.utterance_keys.tolist())
        tuning = {s: [u.path for u in corpus.utterances.get(s, []) if u.key in test_keys] for s in inputs.speakers}
        described = "the training speakers' test utterances"
    if sum(map(len, tuning.values())) == 0:
        raise utils.PipelineError(f"none of {described} is in the corpus at {corpus.root}: point VCTK_CORPUS_PATH "
                                  f"at the corpus the inputs were built from")
    return tuning, described


TUNING_SEEDS = ([15, 0], [15, 6])  # the tuning conversations like the test's, and those with longer turns


def tuning_curves(detector, paths_by_speaker, skipped):
    """(embedding curves, delta-BIC curves, true changes) of the tuning conversations: CONVERSATIONS like the test's,
    and as many whose turns hold CONVERSATION_TUNING_LONG_TURNS utterances. A threshold tuned on both holds for
    turns longer than the test's too (how long a user's turns are is not known)."""
    curves, baselines, truths = [], [], []
    for seed, per_turn, desc in ((TUNING_SEEDS[0], None, "tuning conversations"),
                                 (TUNING_SEEDS[1], constants.CONVERSATION_TUNING_LONG_TURNS,
                                  "tuning conversations, longer turns")):
        found = conversation_curves(detector, paths_by_speaker, [constants.SEED] + seed, desc, skipped,
                                    per_turn=per_turn)
        curves, baselines, truths = curves + found[0], baselines + found[1], truths + found[2]
    return curves, baselines, truths


def evaluate(trained, tuning_paths, test_paths, folder, tuning_described="the tuning speakers' utterances"):
    """Tune the thresholds on conversations of `tuning_paths`, measure on those of `test_paths` (both
    {speaker: [paths]}), write the plots into `folder`; the report (a dict)."""
    from ml import plots
    detector = ChangeDetector(trained=trained)
    collars = constants.CHANGE_COLLARS_S
    skipped = {}
    tuning, tuning_bic, tuning_truths = tuning_curves(detector, tuning_paths, skipped)
    threshold, tuning_f1 = tune_threshold(tuning, tuning_truths, collars[0])
    bic_threshold, bic_tuning_f1 = tune_threshold(tuning_bic, tuning_truths, collars[0])
    curves, bic, truths, shown, spent = conversation_curves(
        detector, test_paths, [constants.SEED, 15, 1], "test conversations", skipped, keep=constants.CONVERSATION_PLOTS)
    by_collar, purity, coverage, found = figures(curves, truths, threshold, collars)
    bic_by_collar, bic_purity, bic_coverage, bic_found = figures(bic, truths, bic_threshold, collars)
    audio = sum(c.duration for c in curves)
    main = by_collar[f"{collars[0]:g}"]
    report = {**main, "purity": purity, "coverage": coverage, "collar_s": collars[0], "threshold": threshold,
              "by_collar": by_collar, "num_conversations": len(curves), "num_changes": sum(map(len, truths)),
              "num_speakers": len(test_paths), "audio_s": audio, "real_time_factor": audio / max(spent, 1e-9),
              "baseline": {**bic_by_collar[f"{collars[0]:g}"], "method": "delta-BIC on the static MFCCs",
                           "purity": bic_purity, "coverage": bic_coverage, "threshold": bic_threshold,
                           "by_collar": bic_by_collar},
              "tuning": {"speakers": len(tuning_paths), "num_conversations": len(tuning), "f1": tuning_f1,
                         "utterances_per_turn": [constants.CONVERSATION_UTTERANCES_PER_TURN,
                                                 constants.CONVERSATION_TUNING_LONG_TURNS],
                         "baseline_f1": bic_tuning_f1,
                         "utterances": tuning_described},
              "num_skipped_files": len(skipped), "skipped_files": skipped}
    utils.ensure_writable_dir(folder)
    # an earlier evaluation's report first (the new one is written last: a kill leaves none, not a mix), then its
    # plots and example, which may not be this one's
    for old in [folder / REPORT, *folder.glob("speaker_changes_*.png"), folder / EXAMPLE]:
        old.unlink(missing_ok=True)
    if shown:  # the first test conversation as audio, to try `detect` on: its true changes are in the report
        import soundfile
        with utils.atomic_path(folder / EXAMPLE) as tmp:
            soundfile.write(tmp, np.clip(shown[0].signal, -1, 1), constants.SAMPLE_RATE, subtype="PCM_16", format="WAV")
        report["example"] = {"file": EXAMPLE, "changes_s": [round(t, 3) for t in shown[0].changes],
                             "turns": [[round(a, 3), round(b, 3), s] for a, b, s in shown[0].turns]}
    for k, conversation in enumerate(shown):
        plots.change_curve(curves[k], threshold, found[k], folder / f"speaker_changes_{k + 1}.png",
                           truth=truths[k], baseline=(bic[k], bic_threshold, bic_found[k]),
                           title=f"test conversation {k + 1}: {len(set(t[2] for t in conversation.turns))} "
                                 f"speakers, {len(conversation.turns)} turns")
    return report
