"""What ``fit`` agrees on across MPI ranks before and while it trains.

Every rank must run the same run: the same seed (hence the same shuffling,
augmentation and dropout streams), the same starting weights, and the same
decisions between batches (stop on Ctrl-C, stop early). With one process each
function here returns at once and changes nothing.
"""

from __future__ import annotations

import numpy as np

from convnp.distributed import Communicator, on_every_rank

__all__ = ["agreed_seed", "copy_weights_from_first_rank", "check_rank_batches", "agreed"]


def agreed_seed(seed, communicator: Communicator):
    """Rank 0's seed, on every rank: a seed the ranks were given differently, or drawn (None, a Generator), is shared.

    A Generator is drawn from as a single process draws from it, so that rank
    0's seed is the one a one-process run would use. An int seed outside
    [0, 2**64) is kept as given.
    """
    if communicator.size == 1:
        return seed
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**63))
    elif seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    elif not 0 <= int(seed) < 2**64:
        return seed
    value = np.array([int(seed)], dtype=np.uint64)
    communicator.broadcast(value, "fit: sharing rank 0's seed")
    return int(value[0])


def copy_weights_from_first_rank(model, communicator: Communicator) -> None:
    """Give every rank rank 0's parameters and buffers (models built without a seed differ from rank to rank)."""
    if communicator.size == 1:
        return
    state = model.state_dict()
    # float64 holds every float32 (and float16) value exactly, so one buffer carries all of them.
    flat = np.concatenate([array.ravel().astype(np.float64) for array in state.values()])
    communicator.broadcast(flat, "fit: copying rank 0's weights to every rank")
    offsets = np.cumsum([0, *(array.size for array in state.values())])
    model.load_state_dict(
        {
            key: flat[first:last].reshape(array.shape).astype(array.dtype)
            for (key, array), first, last in zip(state.items(), offsets[:-1], offsets[1:])
        }
    )


def check_rank_batches(num_samples: int, batch_size: int, ranks: int) -> None:
    """Every batch, the last one included, must give each of ``ranks`` ranks at least one sample."""
    if ranks == 1:
        return
    remainder = num_samples % batch_size
    smallest = min(batch_size, num_samples) if remainder == 0 else remainder
    if smallest < ranks:
        which = "every batch has" if smallest == min(batch_size, num_samples) else "the last batch has"
        raise on_every_rank(  # the same sizes on every rank: each raises it here
            ValueError(
                f"fit: {ranks} MPI ranks need at least {ranks} samples in every batch (one per rank), but {which} "
                f"{smallest} ({num_samples} samples in batches of {batch_size}); change batch_size or the number "
                "of samples"
            )
        )


def agreed(flag: bool, communicator: Communicator, what: str) -> bool:
    """Whether ``flag`` is true on any rank: a decision every rank then takes together."""
    return bool(flag) if communicator.size == 1 else communicator.any(flag, what)
