"""Multimodal sequence packing: several rows, with their images, in one sequence without attention across rows.

Why: visual instruction data mixes one-word VQA answers with paragraph-long captions, so a padded batch
is mostly padding and even a length-grouped one keeps some. A packed step carries only real tokens.

How it stays exact (`tests/vlmtrain/data/test_packing.py` proves it, per family):
1. `pack_rows` puts row indices into bins of at most `capacity` tokens, first-fit-decreasing within
   windows of the row stream (so a task mix drawn by the `TaskSampler` still holds inside each step),
   with ties and the bin order fixed by `seed`.
2. `PackedCollator` tokenises a step's rows with the run's own `ChatCollator` (same answer mask, same
   image expansion), strips each row's padding and concatenates the rows into one (1, T) sequence.
   `position_ids` restart at 0 for every row; with no 2-D attention mask and no cache, transformers
   (`masking_utils.find_packed_sequence_indices`) turns restarting positions into a block-diagonal causal
   mask for SDPA/eager and into `cu_seqlens` for flash-attention varlen. The first label of each row is
   -100, so the last token of one row never learns to predict the next row's first token.
3. Images stay in row order (the model scatters image features into image tokens in order), and every
   vision tower here encodes each image on its own, so each row's images reach that row only.
4. 3-D mRoPE families (Qwen2/2.5/3-VL, GLM-4.1V) get `get_rope_index` per row, concatenated
   (`attach_packed_mrope`); Gemma 3's bidirectional image blocks get per-row masks
   (`vlmtrain.models.packing_masks.attach_packed_block_masks`).
Families where packing is not proved (Qwen3.5's linear attention, Mllama's cross-attention of tokens before a
row's first image, PaliGemma's bidirectional prefix) have `packing_supported=False` in `vlmtrain.models.families` and
are refused by name at `train.packing`.

Per-task losses reduce per original row (`packed_task_losses`), never per packed sequence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vlmtrain.data.collate import IGNORE_INDEX, ChatCollator
from vlmtrain.models.families import FAMILIES, Family

if TYPE_CHECKING:  # pragma: no cover
    import torch

WINDOW_BINS = 16  # bins filled per first-fit-decreasing window: local enough to keep the task mix per step
_NESTED_RANK = {"pixel_values": 5, "pixel_attention_mask": 4}  # per-row image stacks (B, N, ...) of Idefics3 & co.
_ROW_KEYS = ("input_ids", "labels", "token_type_ids", "mm_token_type_ids")  # (B, L) per-token tensors


def packing_problem(*, family: Family) -> str | None:
    """Why `train.packing` cannot run on `family` (None when it can); names the families that can."""
    if family.packing_supported:
        return None
    supported = sorted(name for name, f in FAMILIES.items() if f.packing_supported)
    return (f"packing is not supported yet for model family '{family.model_type}' (its position ids or attention "
            f"are not correct when packed); supported: {', '.join(supported)}. Set train.packing: false")


def pack_rows(*, lengths: Sequence[int], capacity: int, seed: int, window_bins: int = WINDOW_BINS) -> list[list[int]]:
    """Bins of indices into `lengths` (a row stream), each summing to at most `capacity` tokens.

    The stream is cut into windows of about `window_bins * capacity` tokens; each window is packed
    first-fit-decreasing (ties in a seeded order), and the bins of all windows are shuffled by `seed`.
    Every index appears exactly once. A row longer than `capacity` raises (the collator cuts rows at
    `max_length`, so pass lengths clipped to it).
    """
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    sizes = np.asarray(lengths, dtype=np.int64)
    if (sizes > capacity).any():
        raise ValueError(f"a row has {int(sizes.max())} tokens, more than the pack capacity {capacity}")
    rng = np.random.default_rng([seed, 7])
    bins: list[list[int]] = []
    start = 0
    while start < len(sizes):
        stop, total = start, 0
        while stop < len(sizes) and total < window_bins * capacity:
            total += int(sizes[stop])
            stop += 1
        window = np.arange(start, stop)
        window = window[rng.permutation(len(window))]  # seeded tie order
        window = window[np.argsort(-sizes[window], kind="stable")]
        free: list[int] = []
        members: list[list[int]] = []
        for index in window.tolist():
            size = int(sizes[index])
            for b, room in enumerate(free):
                if size <= room:
                    free[b] -= size
                    members[b].append(index)
                    break
            else:
                free.append(capacity - size)
                members.append([index])
        bins.extend(members)
        start = stop
    return [bins[i] for i in rng.permutation(len(bins))]


class PackedDataset:
    """A map-style dataset whose item `i` is pack `i`: the list of its rows (dicts from `rows`).

    Why a dataset of packs: the stock Trainer's sampler, batching, DDP sharding and exact resume (it
    skips the batches it has consumed) then work unchanged, one pack per sample. Indexing by a column
    name (`dataset["task"]`) reads the underlying rows' column, for checks that look at the whole data.
    """

    def __init__(self, *, rows: Any, packs: Sequence[Sequence[int]]) -> None:
        self.rows = rows
        self.packs = [list(map(int, p)) for p in packs]

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self.rows[key]
        return [self.rows[i] for i in self.packs[key]]


@dataclass(kw_only=True)
class PackedCollator:
    """Collate a list of packs (each a list of rows) into one (1, T) padding-free sequence.

    Returns what `ChatCollator` returns, flattened: `input_ids`, `labels` (and `token_type_ids` where
    the processor gives them) of shape (1, T), `position_ids` (1, T) restarting at 0 per row, the image
    tensors in row order, `use_cache=False` (a cache would switch off transformers' packed-sequence mask)
    and, with `carry_tasks`, `tasks` (one per original row). No `attention_mask`: that is what makes
    transformers derive the block-diagonal mask from `position_ids`.
    """

    inner: ChatCollator
    carry_tasks: bool = False

    def __call__(self, packs: list[list[dict[str, Any]]]) -> dict[str, Any]:
        rows = [row for pack in packs for row in pack]
        plain = replace(self.inner, carry_tasks=False)
        nested = plain.family is not None and plain.family.nested_images
        tasks = [str(r["task"]) for r in rows] if self.carry_tasks else None
        return flatten_batch(batch=plain(rows), nested_images=nested, tasks=tasks)


def flatten_batch(*, batch: Mapping[str, Any], nested_images: bool = False,
                  tasks: Sequence[str] | None = None) -> dict[str, Any]:
    """A right-padded collator batch (B rows) as one packed (1, T) sequence (see `PackedCollator`)."""
    import torch

    lengths = batch["attention_mask"].sum(dim=1).tolist()
    out: dict[str, Any] = {}
    for key in _ROW_KEYS:
        if key in batch:
            parts = [batch[key][b, :n] for b, n in enumerate(lengths)]
            if key == "labels":
                parts = [torch.cat([p.new_full((1,), IGNORE_INDEX), p[1:]]) for p in parts]
            out[key] = torch.cat(parts).unsqueeze(0)
    out["position_ids"] = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    for key, value in batch.items():
        if key in out or key == "attention_mask" or key in _ROW_KEYS:
            continue
        if nested_images and getattr(value, "dim", lambda: 0)() == _NESTED_RANK.get(key):
            # per-row image stacks (Idefics3: B x N x C x H x W, padded with all-zero images that the model
            # drops) become one row of B*N images, still in row order
            value = value.reshape(1, -1, *value.shape[2:])
        out[key] = value
    out["use_cache"] = False
    if tasks is not None:
        out["tasks"] = list(tasks)
    return out


def row_segments(*, position_ids: torch.Tensor) -> torch.Tensor:
    """(1, T) int: which original row each packed token belongs to (0, 0, 1, 1, 1, 2, ...)."""
    import torch

    flat = position_ids.reshape(-1) if position_ids.dim() == 2 else position_ids[0].reshape(-1)
    return (flat == 0).cumsum(0).sub(1).clamp(min=0).unsqueeze(0).to(torch.long)


def packed_row_losses(*, logits: torch.Tensor, labels: torch.Tensor,
                      position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token losses, supervised token count) per original row of a packed (1, T) batch."""
    import torch
    import torch.nn.functional as F

    segments = row_segments(position_ids=position_ids)[0, 1:]
    logits, labels = logits[0, :-1], labels[0, 1:]
    token_loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="none")
    mask = (labels != IGNORE_INDEX).to(token_loss.dtype)
    rows = int(segments.max()) + 1 if len(segments) else 0
    row_sum = torch.zeros(rows, dtype=token_loss.dtype, device=token_loss.device).index_add(0, segments,
                                                                                            token_loss * mask)
    row_count = torch.zeros(rows, dtype=mask.dtype, device=mask.device).index_add(0, segments, mask)
    return row_sum, row_count


def packed_task_losses(*, logits: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor,
                       tasks: Sequence[str], reduction: Literal["token", "sample"] = "token") -> dict[str, torch.Tensor]:
    """`vlmtrain.training.losses.per_task_losses` for a packed batch: the same reductions, per original row."""
    from vlmtrain.training.losses import reduce_rows  # torch: vlmtrain.config imports this module torch-free

    row_sum, row_count = packed_row_losses(logits=logits, labels=labels, position_ids=position_ids)
    if len(row_sum) != len(tasks):
        raise ValueError(f"{len(tasks)} task names for a packed batch of {len(row_sum)} rows")
    return reduce_rows(row_sum=row_sum, row_count=row_count, tasks=tasks, reduction=reduction)


@dataclass(frozen=True, kw_only=True)
class PackingReport:
    """What packing does to the data, measured before training: efficiency and the task mix."""

    rows: int
    packs: int
    capacity: int
    real_tokens: int
    padded_slots: int  # slots the same rows take in random padded batches of `batch_size`
    mix: dict[str, float]  # share of rows per task in the packs
    step_mix_spread: float  # mean |step share - overall share| over steps and tasks

    @property
    def efficiency(self) -> float:
        """Real tokens / slot tokens (packs x capacity)."""
        return self.real_tokens / max(1, self.packs * self.capacity)

    def as_dict(self) -> dict[str, Any]:
        """What `runs/NAME/packing.json` holds (the report's fields plus `efficiency`)."""
        from dataclasses import asdict

        return {**asdict(self), "efficiency": self.efficiency}

    def text(self) -> str:
        mix = ", ".join(f"{t} {s:.1%}" for t, s in sorted(self.mix.items()))
        return (f"packing: {self.rows} rows in {self.packs} packs of <= {self.capacity} tokens; efficiency "
                f"{self.efficiency:.1%} real tokens / slot tokens (random padded batches: "
                f"{self.real_tokens / max(1, self.padded_slots):.1%}); task mix {mix} "
                f"(per step within ±{self.step_mix_spread:.1%})")


def packing_report(*, lengths: Sequence[int], tasks: Sequence[str], packs: Sequence[Sequence[int]], capacity: int,
                   batch_size: int, seed: int) -> PackingReport:
    """Efficiency of `packs` over rows with `lengths`/`tasks`, against random padded batches of `batch_size`."""
    sizes = np.asarray(lengths, dtype=np.int64)
    used = [i for p in packs for i in p]
    order = np.random.default_rng(seed).permutation(np.asarray(used, dtype=np.int64))  # the same rows, padded
    padded = sum(int(sizes[order[s:s + batch_size]].max()) * len(order[s:s + batch_size])
                 for s in range(0, len(order), batch_size))
    counts = Counter(tasks[i] for i in used)
    mix = {t: n / max(1, len(used)) for t, n in counts.items()}
    spreads = []
    for s in range(0, len(packs), batch_size):
        step = Counter(tasks[i] for p in packs[s:s + batch_size] for i in p)
        total = sum(step.values())
        spreads.extend(abs(step[t] / total - share) for t, share in mix.items())
    return PackingReport(rows=len(used), packs=len(packs), capacity=capacity, real_tokens=int(sizes[used].sum()),
                         padded_slots=padded, mix=mix, step_mix_spread=float(np.mean(spreads)) if spreads else 0.0)


def row_stream(*, config: Any, tasks: Sequence[str], sources: Sequence[str]) -> list[int]:
    """The rows one epoch trains on, in order: the `TaskSampler`'s epoch-0 draw with `multitask:` (so
    temperature mixing, weights and caps hold), else every row once in a seeded shuffle."""
    if config.multitask is None:
        return np.random.default_rng([config.seed, 11]).permutation(len(tasks)).tolist()
    from vlmtrain.data.sampler import TaskSampler  # torch: vlmtrain.config imports this module torch-free

    sampling = config.multitask.sampling
    sampler = TaskSampler(tasks=list(tasks), sources=list(sources) if sampling.group_by == "source_task" else None,
                          num_samples=sampling.num_samples, temperature=sampling.temperature,
                          weights=sampling.weights, caps=sampling.caps, seed=config.seed)
    return sampler.indices(epoch=0).tolist()


def build_packs(*, config: Any, rows: Any, lengths: Sequence[int]) -> tuple[PackedDataset, PackingReport]:
    """The packed training set of a run (`train.packing`) and its report, from the kept `rows` and their
    token `lengths` (clipped to `data.max_length`). Packs are fixed for the run; each epoch reorders them."""
    tasks = [str(t) for t in rows["task"]]
    sources = [str(s) for s in rows["source"]] if "source" in rows.column_names else ["" for _ in tasks]
    stream = row_stream(config=config, tasks=tasks, sources=sources)
    capacity = config.data.max_length
    bins = pack_rows(lengths=[lengths[i] for i in stream], capacity=capacity, seed=config.seed)
    packs = [[stream[i] for i in b] for b in bins]
    report = packing_report(lengths=lengths, tasks=tasks, packs=packs, capacity=capacity,
                            batch_size=config.train.batch_size, seed=config.seed)
    return PackedDataset(rows=rows, packs=packs), report


def attach_packed_mrope(model: Any) -> bool:
    """Give a 3-D mRoPE model (Qwen2-VL style: a module with `get_rope_index`) packed position ids.

    Why a forward pre-hook: mRoPE positions need the model's own `get_rope_index` (image grids, merge
    size), which a collator does not have. On a packed batch (`position_ids` (1, T) restarting per row)
    the hook cuts the sequence back into its rows, runs `get_rope_index` on them (each row's images in
    order, exactly as for a padded batch), concatenates the rows' (3, T) positions and prepends the 1-D
    text positions: the (4, 1, T) layout from which transformers builds the block-diagonal mask. Returns
    whether a hook was attached (False: the model's positions are 1-D and need nothing).
    """
    targets = [m for m in model.modules() if hasattr(m, "get_rope_index") and hasattr(m, "compute_3d_position_ids")]
    for module in targets:
        module.register_forward_pre_hook(_packed_mrope_hook, with_kwargs=True)
    return bool(targets)


def _packed_mrope_hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any] | None:
    import torch

    positions, input_ids = kwargs.get("position_ids"), kwargs.get("input_ids")
    if positions is None or positions.dim() != 2 or input_ids is None or kwargs.get("attention_mask") is not None:
        return None  # not a packed batch: the model computes its own positions
    segments = row_segments(position_ids=positions)[0]
    lengths = torch.bincount(segments).tolist()
    types = kwargs.get("mm_token_type_ids")
    width = max(lengths)
    ids = input_ids.new_zeros((len(lengths), width))
    kinds = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    starts = [0, *np.cumsum(lengths).tolist()]
    for r, n in enumerate(lengths):
        ids[r, :n] = input_ids[0, starts[r]:starts[r] + n]
        if types is not None:
            kinds[r, :n] = types[0, starts[r]:starts[r] + n]
        mask[r, :n] = 1
    rope, _ = module.get_rope_index(input_ids=ids, mm_token_type_ids=kinds, image_grid_thw=kwargs.get("image_grid_thw"),
                                    video_grid_thw=kwargs.get("video_grid_thw"), attention_mask=mask)
    rope = torch.cat([rope[:, r, :n] for r, n in enumerate(lengths)], dim=1).unsqueeze(1)  # (3, 1, T)
    kwargs = {**kwargs, "position_ids": torch.cat([positions.unsqueeze(0), rope.to(positions)], dim=0)}
    return args, kwargs
