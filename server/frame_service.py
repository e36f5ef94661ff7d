"""Frames by episode id and step: observation files, model decodes, overlays, bounded caches.

A client names an episode and a step, never a file. The episode's stored source path must
resolve inside a registered data root (`paths.contained`) before its replay format reads it.
Recon and prediction panels need the checkpoint re-run over the episode: its snapshot is loaded
through the checkpoint-format registry (no code executed), the filter is run once over the
whole episode, and both decodes are kept per (checkpoint, episode), so scrubbing through an
episode costs one model run. Rendered images are kept keyed by everything drawn on them
(including the flag state, so a review change shows at once). Every cache is an LRU bounded by
bytes that makes each missing value once (`cache.ByteLRU`): a model loads once however many
requests ask for it at the same time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from beliefscope.config import Settings
from beliefscope.errors import NotFoundError
from beliefscope.replay.base import Episode, EpisodeRef, get_format
from beliefscope.replay.native import SCENE as SCENE_FILE
from beliefscope.rssm import formats as ckpt_formats
from beliefscope.rssm.core import WorldModel, observe
from beliefscope.rssm.formats import CheckpointRef
from beliefscope.store.engine import Store
from beliefscope.values.page import MAX_LIMIT
from beliefscope.values.traces import BELIEF_VARIANT, CheckpointInfo, EpisodeInfo
from server import frames
from server.cache import ByteLRU
from server.frames import ImageFormat, StepInfo
from server.paths import contained

if TYPE_CHECKING:
    from beliefscope.world.rerender import SceneView

DECODE_CHUNK = 256
"""Time steps decoded at once (bounds memory on long episodes)."""


@dataclass(frozen=True, eq=False)
class Decodes:
    """A checkpoint's view of one episode: per-step images as uint8 (T, H, W, 3)."""

    recon: np.ndarray  # posterior reconstruction
    pred: np.ndarray  # prior one-step prediction

    @property
    def nbytes(self) -> int:
        return self.recon.nbytes + self.pred.nbytes


@dataclass(frozen=True, eq=False)
class Beliefs:
    """A checkpoint's decoded belief of the box's position over one episode (`decode` probe):
    the position (T, 2), and the mean (T, H, 2) and spread (T, H) of its imagined futures."""

    position: np.ndarray
    futures: np.ndarray | None
    spread: np.ndarray | None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.position, self.futures, self.spread) if a is not None)


@dataclass(frozen=True)
class Rendered:
    data: bytes
    media_type: str


@dataclass(frozen=True, eq=False)
class Loaded:
    """A model with the bytes of its checkpoint's content (what its weights take in memory)."""

    model: WorldModel
    nbytes: int


class FrameService:
    """Renders frames for the API; safe to share between request threads."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        frame_cache_bytes: int = 64 << 20,
        model_cache_bytes: int = 2 << 30,
        decode_cache_bytes: int = 512 << 20,
        truth_cache_bytes: int = 64 << 20,
    ) -> None:
        self._store = store
        self._settings = settings
        self._frames: ByteLRU[tuple, Rendered] = ByteLRU(frame_cache_bytes, lambda r: len(r.data))
        self._models: ByteLRU[int, Loaded] = ByteLRU(model_cache_bytes, lambda m: m.nbytes)
        self._decodes: ByteLRU[tuple[int, int], Decodes] = ByteLRU(
            decode_cache_bytes, lambda d: d.nbytes
        )
        self._truth: ByteLRU[int, dict[str, np.ndarray]] = ByteLRU(
            truth_cache_bytes, lambda truth: sum(a.nbytes for a in truth.values())
        )
        self._beliefs: ByteLRU[tuple[int, int], Beliefs | None] = ByteLRU(
            truth_cache_bytes, lambda b: 64 if b is None else b.nbytes
        )
        self._run_roots: list[Path] | None = None
        self._compute = threading.Lock()  # one model run at a time: they saturate the cores

    # -- where files may be read from -----------------------------------------------------

    def roots(self, *, fresh: bool = False) -> list[Path]:
        """Registered data roots: the configured ones, the ingested runs' log dirs and replay
        dirs, and the server's home (checkpoint snapshots live there). The runs' part is kept
        between calls and re-read on demand (`contained_path` does when a path is outside the
        known roots)."""
        if fresh or self._run_roots is None:
            runs = self._store.queries.list_runs(limit=MAX_LIMIT).items
            self._run_roots = [Path(d) for r in runs for d in (r.logdir, *r.replay_dirs)]
        return [*self._settings.data_roots, *self._run_roots, self._settings.home]

    def contained_path(self, raw: str | Path) -> Path:
        try:
            return contained(raw, self.roots())
        except NotFoundError:  # maybe a run ingested since the roots were read
            return contained(raw, self.roots(fresh=True))

    def episode_ref(self, episode: EpisodeInfo) -> EpisodeRef:
        """The replay reference of a stored episode, after the containment check."""
        return EpisodeRef.stored(episode, self.contained_path(episode.source_path))

    # -- the pieces of a frame --------------------------------------------------------------

    def episode(self, episode_id: int, t: int) -> EpisodeInfo:
        episode = self._store.queries.get_episode(episode_id=episode_id)
        if not 0 <= t < episode.length:
            raise NotFoundError(f"episode {episode_id} has steps 0..{episode.length - 1}, not {t}")
        return episode

    def observation(self, episode: EpisodeInfo, t: int) -> np.ndarray:
        ref = self.episode_ref(episode)
        return get_format(ref.format).frame(ref, t)

    def default_checkpoint(self, episode: EpisodeInfo) -> CheckpointInfo:
        """The newest checkpoint of the episode's run with a filter trace on it, else the
        run's newest checkpoint."""
        queries = self._store.queries
        traced = {
            t.checkpoint_id
            for t in queries.list_traces(
                episode_id=episode.id, variant="filter", limit=MAX_LIMIT
            ).items
        }
        ckpts = queries.list_checkpoints(run_id=episode.run_id, limit=MAX_LIMIT).items
        if not ckpts:
            raise NotFoundError(f"run {episode.run_id} has no checkpoints to decode with")
        with_trace = [c for c in ckpts if c.id in traced]
        return (with_trace or list(ckpts))[-1]

    def checkpoint_for(self, episode: EpisodeInfo, checkpoint_id: int | None) -> CheckpointInfo:
        if checkpoint_id is None:
            return self.default_checkpoint(episode)
        ckpt = self._store.queries.get_checkpoint(checkpoint_id=checkpoint_id)
        if ckpt.run_id != episode.run_id:
            raise NotFoundError(
                f"checkpoint {checkpoint_id} is not of episode {episode.id}'s run {episode.run_id}"
            )
        return ckpt

    def model(self, ckpt: CheckpointInfo) -> WorldModel:
        def load() -> Loaded:
            ref = CheckpointRef(ckpt.format, self.contained_path(ckpt.source_path), ckpt.step)
            files = ckpt_formats.get_format(ref.format).content_files(ref)
            model = ckpt_formats.load(ref, config=dict(ckpt.config))
            return Loaded(model, sum(f.stat().st_size for f in files))

        return self._models.get_or_make(ckpt.id, load).model

    def decodes(self, ckpt: CheckpointInfo, episode: EpisodeInfo) -> Decodes:
        def decode() -> Decodes:
            ref = self.episode_ref(episode)
            with self._compute:
                return decode_episode(self.model(ckpt), get_format(ref.format).load(ref))

        return self._decodes.get_or_make((ckpt.id, episode.id), decode)

    def beliefs(self, ckpt: CheckpointInfo, episode: EpisodeInfo) -> Beliefs | None:
        """The checkpoint's decoded belief over the episode; None where the `decode` probe has
        not run."""

        def read() -> Beliefs | None:
            queries = self._store.queries
            try:
                trace = queries.find_trace(
                    checkpoint_id=ckpt.id, episode_id=episode.id, variant=BELIEF_VARIANT
                )
            except NotFoundError:
                return None
            if "extra:decoded_pos" not in trace.arrays:
                return None

            def array(name: str) -> np.ndarray | None:
                if f"extra:{name}" not in trace.arrays:
                    return None
                return np.asarray(
                    queries.read_array(trace_id=trace.id, name=f"extra:{name}").values, np.float64
                )

            position = array("decoded_pos")
            assert position is not None
            return Beliefs(position, array("futures_mean"), array("futures_spread"))

        return self._beliefs.get_or_make((ckpt.id, episode.id), read)

    def step_info(self, episode: EpisodeInfo, ckpt: CheckpointInfo | None, t: int) -> StepInfo:
        """KL and correction of the checkpoint's filter trace at t, and the flag state."""
        if ckpt is None:
            return StepInfo(step=t)
        label = f"ckpt {ckpt.id}" + (f" @{ckpt.step}" if ckpt.step is not None else "")
        queries = self._store.queries
        try:
            trace = queries.find_trace(checkpoint_id=ckpt.id, episode_id=episode.id)
        except NotFoundError:  # decodable, but not ingested for this episode yet
            return StepInfo(step=t, label=label)
        series = queries.read_trace(trace_id=trace.id, metrics=["kl", "correction"], t0=t, t1=t)
        kl = _value_at(series.series.get("kl"))
        corr = _value_at(series.series.get("correction"))
        state = self.flag_state(trace.id, t)
        return StepInfo(step=t, kl=kl, correction=corr, flag_state=state, label=label)

    def flag_state(self, trace_id: int, t: int) -> str | None:
        """Review state of the flags of a trace covering step t; the most pressing wins
        (confirmed, then open, then dismissed)."""
        flags = self._store.reviews.list_flags(
            trace_id=trace_id, include_stale=False, limit=MAX_LIMIT
        ).items
        states = {f.state for f in flags if f.t0 <= t <= f.t1}
        return next((s for s in ("confirmed", "open", "dismissed") if s in states), None)

    # -- whole frames -----------------------------------------------------------------------

    def step_frame(
        self,
        episode_id: int,
        t: int,
        *,
        panels: tuple[str, ...] = (),
        checkpoint_id: int | None = None,
        fmt: ImageFormat = "jpeg",
        scale: int = 4,
    ) -> Rendered:
        episode = self.episode(episode_id, t)
        needs_model = bool(panels) or checkpoint_id is not None
        ckpt = self.checkpoint_for(episode, checkpoint_id) if needs_model else None
        info = self.step_info(episode, ckpt, t)
        key = ("step", episode_id, t, ckpt.id if ckpt else None, panels, fmt, scale, info)

        def render() -> Rendered:
            obs = self.observation(episode, t)
            recon = pred = None
            if panels:
                assert ckpt is not None
                dec = self.decodes(ckpt, episode)
                recon, pred = dec.recon[t], dec.pred[t]
            image = frames.step_frame(obs, info, recon=recon, pred=pred, panels=panels, scale=scale)
            return Rendered(frames.encode(image, fmt), frames.MEDIA_TYPES[fmt])

        return self._frames.get_or_make(key, render)

    def compare_frame(
        self,
        episode_id: int,
        t: int,
        checkpoint_ids: tuple[int, int],
        *,
        panels: tuple[str, ...] = ("recon", "pred", "error"),
        fmt: ImageFormat = "jpeg",
        scale: int = 4,
    ) -> Rendered:
        """The same step under two checkpoints: one framed row per checkpoint, stacked."""
        episode = self.episode(episode_id, t)
        ckpts = [self.checkpoint_for(episode, c) for c in checkpoint_ids]
        infos = tuple(self.step_info(episode, c, t) for c in ckpts)
        key = ("compare", episode_id, t, tuple(c.id for c in ckpts), panels, fmt, scale, infos)

        def render() -> Rendered:
            obs = self.observation(episode, t)
            rows = []
            for ckpt, info in zip(ckpts, infos, strict=True):
                dec = self.decodes(ckpt, episode)
                rows.append(
                    frames.step_frame(
                        obs, info, recon=dec.recon[t], pred=dec.pred[t], panels=panels, scale=scale
                    )
                )
            return Rendered(frames.encode(frames.stack_rows(rows), fmt), frames.MEDIA_TYPES[fmt])

        return self._frames.get_or_make(key, render)

    def strip(
        self,
        episode_id: int,
        t0: int,
        steps: int,
        *,
        panels: tuple[str, ...] = frames.STRIP_PANELS,
        checkpoint_id: int | None = None,
        fmt: ImageFormat = "png",
    ) -> Rendered:
        """Steps t0.. (at most `steps`, cut at the episode's end) as rows of `panels` at the
        frames' own size (`frames.strip`): one request per window of the player."""
        episode = self.episode(episode_id, t0)
        t1 = min(t0 + steps, episode.length)
        needs_model = any(p != "obs" for p in panels)
        ckpt = self.checkpoint_for(episode, checkpoint_id) if needs_model else None
        key = ("strip", episode_id, t0, t1, ckpt.id if ckpt else None, panels, fmt)

        def render() -> Rendered:
            ref = self.episode_ref(episode)
            replay = get_format(ref.format)
            obs = np.stack([replay.frame(ref, t) for t in range(t0, t1)])  # (N, H, W, C)
            recon = pred = None
            if ckpt is not None:
                dec = self.decodes(ckpt, episode)
                recon, pred = dec.recon[t0:t1], dec.pred[t0:t1]
            image = frames.strip(obs, recon=recon, pred=pred, panels=panels)
            return Rendered(frames.encode(image, fmt), frames.MEDIA_TYPES[fmt])

        return self._frames.get_or_make(key, render)

    def truth_frame(
        self,
        episode_id: int,
        t: int,
        *,
        camera: str = "overview",
        size: int = 256,
        fmt: ImageFormat = "jpeg",
        checkpoint_id: int | None = None,
        caption: bool = True,
    ) -> Rendered:
        """The saved MuJoCo state of step t re-rendered from `camera` (the overview sees what
        the robot's camera could not), with the box's true position marked; with a
        `checkpoint` whose `decode` probe ran, also where that model believes the box is and
        the spread of its imagined futures. `caption=False` leaves out the text strip (the
        dashboard writes its captions as HTML)."""
        from beliefscope.world import rerender

        episode = self.episode(episode_id, t)
        if not episode.has_truth:
            raise NotFoundError(f"episode {episode_id} carries no MuJoCo state to re-render")
        ckpt = None if checkpoint_id is None else self.checkpoint_for(episode, checkpoint_id)
        beliefs = None if ckpt is None else self.beliefs(ckpt, episode)

        def render() -> Rendered:
            ref = self.episode_ref(episode)
            scene = self.contained_path(ref.path.parent / SCENE_FILE)
            truth = self._truth.get_or_make(
                episode_id, lambda: get_format(ref.format).load(ref).truth
            )
            if "qpos" not in truth:
                raise NotFoundError(f"episode {episode_id} has no saved qpos")
            qpos = truth["qpos"][t]
            view = rerender.scene_view(scene, size)
            image = view.render(qpos, camera)
            x, y = view.box_pixel(qpos, camera)
            if np.isfinite(x) and np.isfinite(y):
                image = frames.mark_point(image, (x, y), "box")
            if beliefs is not None:
                image = _draw_beliefs(image, view, qpos, camera, beliefs, t)
            if caption:
                text = f"t={t}  {camera} camera (ground truth)"
                if "visible_frac" in truth:
                    text += f"  box visible to robot: {float(truth['visible_frac'][t]):.0%}"
                image = np.vstack([image, frames.caption_strip(image.shape[1], text)])
            return Rendered(frames.encode(image, fmt), frames.MEDIA_TYPES[fmt])

        shown = ckpt.id if ckpt is not None and beliefs is not None else None
        key = ("truth", episode_id, t, camera, size, fmt, shown, caption)
        return self._frames.get_or_make(key, render)

    @property
    def cached_frames(self) -> int:
        return len(self._frames)


def _draw_beliefs(
    image: np.ndarray, view: SceneView, qpos: np.ndarray, camera: str, beliefs: Beliefs, t: int
) -> np.ndarray:
    """The decoded belief at t and its imagined futures, projected into the render."""
    position = beliefs.position[t][None]  # (1, 2)
    (belief,) = view.plane_pixels(qpos, camera, position)
    futures = spread = None
    if beliefs.futures is not None and beliefs.spread is not None:
        mean = beliefs.futures[t]  # (H, 2) metres
        futures = view.plane_pixels(qpos, camera, np.nan_to_num(mean))
        # a ring of the spread's radius: the pixel distance to a point `spread` metres away
        edge = view.plane_pixels(
            qpos, camera, np.nan_to_num(mean) + np.column_stack([beliefs.spread[t], 0 * mean[:, 1]])
        )
        spread = np.linalg.norm(edge - futures, axis=1)
        unknown = ~np.isfinite(mean).all(1) | ~np.isfinite(beliefs.spread[t])
        futures[unknown] = np.nan
    return frames.mark_belief(image, (float(belief[0]), float(belief[1])), futures, spread)


def _value_at(series: object) -> float | None:
    values = getattr(series, "values", None)
    return None if values is None or len(values) == 0 else float(values[0])


def decode_episode(model: WorldModel, episode: Episode) -> Decodes:
    """Run the filter over one episode and decode the posterior and the prior's one-step
    prediction at every step (uint8 images)."""
    with torch.inference_mode():
        image = torch.from_numpy(episode.image)[None]  # (1, T, H, W, C)
        action = torch.from_numpy(episode.action.astype(np.float32))[None]  # (1, T, A)
        is_first = torch.from_numpy(episode.is_first.astype(bool))[None]  # (1, T)
        steps = image.shape[1]
        embed = torch.cat(
            [model.encode(image[:, s : s + DECODE_CHUNK]) for s in range(0, steps, DECODE_CHUNK)],
            1,
        )
        traj = observe(model.cell, embed, action, is_first)
        feats = {
            "recon": model.feat(traj.deter, traj.stoch),
            "pred": model.feat(traj.deter, traj.prior.mode()),
        }
        out = {}
        for name, feat in feats.items():
            parts = [
                frames.as_uint8(model.decode(feat[0, s : s + DECODE_CHUNK]).float().numpy())
                for s in range(0, steps, DECODE_CHUNK)
            ]
            out[name] = np.concatenate(parts)  # (T, H, W, C)
    return Decodes(out["recon"], out["pred"])
