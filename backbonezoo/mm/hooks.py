"""``RNGStateHook``: exact resume of the process-wide random generators.

A resumed run must draw the same random numbers an uninterrupted one draws. Three sources matter:

1. Data augmentation. ``SeededSampler`` / ``RepeatAugSampler`` hand ``ImageFolderDataset`` indices seeded by
   ``(seed, epoch, position)`` (``backbonezoo.mm.classification``), so augmentation depends on no generator state,
   in the main process or in any data-loader worker.
2. The training step's own randomness in the main process: mixup / cutmix (numpy), stochastic depth and dropout
   (torch CPU / CUDA), anything on python's ``random``. This hook writes those generators' states into every
   checkpoint (``checkpoint['rng_state']``, one per rank) and restores them when the run resumes from it.
3. Validation between two epochs draws from the same generators (a data-loader iterator takes a seed from torch
   even without workers); a resumed run does not repeat that validation. The hook restores the generators after
   each validation to what they were before it, so validation never shifts the training stream.

Registered as a default hook by ``configs/_base_/default_runtime.py``
(``default_hooks=dict(rng_state=dict(type='RNGStateHook'))``).
"""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..data import get_rng_state, set_rng_state

__all__ = ['RNGStateHook']


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the generators' states in checkpoints, restore them on resume, isolate validation (module docstring)."""

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._before_val = None
        self._loaded = None
        self._gathered = None  # every rank's state at the last point a checkpoint may be saved (distributed runs)

    @staticmethod
    def _all_ranks(state) -> list | None:
        """Every rank's ``state``, gathered on every rank; None in a single process.

        ``Runner.save_checkpoint`` runs on rank 0 only, so the collective cannot happen there: it runs here, in hooks
        every rank calls right before the CheckpointHook (this hook's priority is higher) may save.
        """
        from mmengine.dist import all_gather_object, get_world_size

        return all_gather_object(state) if get_world_size() > 1 else None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._gathered = self._all_ranks(get_rng_state())

    def after_train_epoch(self, runner) -> None:
        self._gathered = self._all_ranks(get_rng_state())

    # validation leaves the training stream untouched
    def before_val(self, runner) -> None:
        self._before_val = get_rng_state()
        self._gathered = self._all_ranks(self._before_val)  # a best checkpoint saved during validation

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            set_rng_state(self._before_val)
            self._before_val = None

    # checkpoints carry every rank's state
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = self._before_val or get_rng_state()  # a best checkpoint saved during validation: the state before it
        states = self._gathered if self._gathered is not None else [state]
        checkpoint['rng_state'] = dict(world_size=len(states), states=states)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = None
        meta = checkpoint.get('meta') or {}
        if checkpoint.get('rng_state') is not None and 'iter' in meta:
            self._loaded = (int(meta['iter']), checkpoint['rng_state'])

    def before_train(self, runner) -> None:
        """Restore the saved states when the run resumed from that checkpoint (not for ``load_from`` weights)."""
        if self._loaded is None:
            return
        saved_iter, saved = self._loaded
        self._loaded = None
        if runner.iter != saved_iter or runner.iter == 0:
            return
        from mmengine.dist import get_rank

        states = saved['states']
        if len(states) != saved.get('world_size', len(states)) or get_rank() >= len(states):
            runner.logger.warning(
                f"RNGStateHook: the checkpoint holds {len(states)} ranks' generator states, this run has more: "
                'random streams continue from the seed, not exactly'
            )
            return
        if len(states) > 1 and runner.world_size != len(states):
            runner.logger.warning(
                f'RNGStateHook: checkpoint written by {len(states)} processes, resumed with {runner.world_size}'
            )
        set_rng_state(states[get_rank()])
