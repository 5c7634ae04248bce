"""`shapes`: a procedural visual world (coloured shapes on a plain background) with exact ground truth.

    - {name: world, kind: shapes, count: 500, tasks: [color, shape, count, position, caption],
       image_size: 64, seed: 0, imbalance: {count: 50}}

Why: an efficacy benchmark needs tasks whose answers are known exactly, that a tiny model can learn
in minutes, and whose sizes can be skewed on purpose (the temperature experiment). Every image is a
pure function of (seed, task, row), drawn with PIL without anti-aliasing and stored as PNG bytes, so
the same recipe gives the same bytes and the same row ids. Shapes never touch each other or the border.

Rows per task (`count` each, or `imbalance[task]`); the row's `task` is the task name:
- color:    one shape; "What colour is the shape?" → "red"
- shape:    one large shape; "What shape is this?" → "circle"
- size:     one shape; "Is the shape small or large?" → "small" (side 14–20 % or 30–42 % of the image)
- count:    1..max_count small shapes; "How many shapes are there?" → "3"
- position: one shape wholly in the left or right half; "Is the shape on the left or on the right?" → "left"
- relation: two shapes of different kinds, one per half; "Is the circle left or right of the square?"
- caption:  one shape; caption "a small red circle on the left" (size, colour, kind, third of the image)
The scene (every shape's kind, colour, box) goes into the row's context, so it reaches `meta`.

`near_duplicates: {fraction: 0.2, shift: 2, colour: 12, side: 1}` plants near-duplicates with ground
truth, for the dedup efficacy benchmark: that fraction of each task's rows re-draws an earlier row's
scene with jitter (every shape moved by up to `shift` px, its side changed by up to `side` px within its
size class, its colour and the background moved by up to `colour` per RGB channel), rendered afresh, not
resized or copied. The answer stays the same (a shape never leaves its half or third), and the row's
context names the original in `near_duplicate_of` (its locator, e.g. "color[12]").
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlmdata.rows import ImageRef, Record, Reject
from vlmdata.sources.base import SourceSpec

TaskName = Literal["color", "shape", "size", "count", "position", "relation", "caption"]
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (40, 70, 220),
    "yellow": (235, 215, 40), "purple": (140, 50, 180), "orange": (245, 140, 20),
}
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((255, 255, 255), (200, 200, 200), (40, 40, 40))
KINDS = ("circle", "square", "triangle")
SIZES = {"small": (0.14, 0.2), "large": (0.3, 0.42)}  # side as a fraction of the image side
THIRDS = ("left", "middle", "right")


class NearDuplicates(BaseModel):
    """How many rows re-draw an earlier scene, and how far the re-drawing may move it."""

    model_config = ConfigDict(extra="forbid")
    fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    shift: int = Field(default=2, ge=0, le=16)  # px, in x and in y, per shape
    colour: int = Field(default=12, ge=0, le=64)  # per RGB channel (the background moves by half)
    side: int = Field(default=1, ge=0, le=8)  # px, kept inside the shape's size class


class ShapesSpec(SourceSpec):
    kind: Literal["shapes"] = "shapes"
    count: int = Field(default=100, ge=1)
    tasks: list[TaskName] = Field(default_factory=lambda: ["color", "shape", "count", "position", "caption"],
                                  min_length=1)
    imbalance: dict[TaskName, int] = Field(default_factory=dict)  # rows per task, overriding `count`
    image_size: int = Field(default=64, ge=32, le=1024)
    max_count: int = Field(default=5, ge=1, le=8)
    seed: int = 0
    near_duplicates: NearDuplicates | None = None

    @model_validator(mode="after")
    def _imbalance_names_tasks(self) -> ShapesSpec:
        extra = sorted(set(self.imbalance) - set(self.tasks))
        if extra:
            raise ValueError(f"imbalance names task(s) {extra} that are not in tasks {self.tasks}")
        if any(n < 0 for n in self.imbalance.values()):
            raise ValueError("imbalance counts must be >= 0")
        return self

    @property
    def path(self) -> str:
        """What plans show as this source's path: it has no file."""
        return f"<procedural seed={self.seed} size={self.image_size}>"

    def rows_per_task(self) -> dict[str, int]:
        return {t: self.imbalance.get(t, self.count) for t in self.tasks}


def _place(rng: random.Random, *, size: int, side: int, taken: list[tuple[int, int, int, int]],
           x_range: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """A box of `side` px whose left edge lies in x_range, 2 px clear of the border and of `taken`."""
    lo, hi = max(x_range[0], 2), min(x_range[1], size - side - 2)
    for _ in range(200):
        if lo > hi:
            return None
        x, y = rng.randint(lo, hi), rng.randint(2, size - side - 2)
        box = (x, y, x + side, y + side)
        if all(box[2] + 2 < b[0] or b[2] + 2 < box[0] or box[3] + 2 < b[1] or b[3] + 2 < box[1] for b in taken):
            return box
    return None


def _side(rng: random.Random, *, size: int, label: str) -> int:
    lo, hi = SIZES[label]
    return rng.randint(round(lo * size), round(hi * size))


def _shape(rng: random.Random, *, size: int, taken: list, x_range: tuple[int, int] | None = None,
           span: tuple[int, int] | None = None, kind: str | None = None,
           label: str | None = None) -> dict[str, Any] | None:
    """A random shape placed clear of `taken`: its left edge in `x_range`, or its whole box in `span`."""
    label = label or rng.choice(list(SIZES))
    side = _side(rng, size=size, label=label)
    if span is not None:
        x_range = (span[0], span[1] - side)
    box = _place(rng, size=size, side=side, taken=taken, x_range=x_range or (0, size))
    if box is None:
        return None
    taken.append(box)
    return {"kind": kind or rng.choice(KINDS), "color": rng.choice(list(COLOURS)), "size": label, "box": list(box)}


def scene(*, task: str, rng: random.Random, size: int, max_count: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(shapes, fields) for one row of `task`; a None shape means a placement did not fit (the caller redraws)."""
    taken: list = []
    if task in ("color", "shape"):
        # shape questions use large shapes: a 4-px triangle and a 4-px circle differ by a pixel or two
        shape = _shape(rng, size=size, taken=taken, label="large" if task == "shape" else None)
        question = "What colour is the shape?" if task == "color" else "What shape is this?"
        return [shape], {"question": question, "answers": [shape["color"] if task == "color" else shape["kind"]]}
    if task == "size":
        shape = _shape(rng, size=size, taken=taken)
        return [shape], {"question": "Is the shape small or large?", "answers": [shape["size"]] if shape else []}
    if task == "count":
        n = rng.randint(1, max_count)
        shapes = [_shape(rng, size=size, taken=taken, label="small") for _ in range(n)]
        return shapes, {"question": "How many shapes are there?", "answers": [str(n)]}
    if task == "position":
        left = rng.random() < 0.5
        span = (0, size // 2 - 2) if left else (size // 2 + 2, size)  # the whole shape lies in its half
        shape = _shape(rng, size=size, taken=taken, span=span)
        return [shape], {"question": "Is the shape on the left or on the right?",
                         "answers": ["left" if left else "right"]}
    if task == "relation":
        a, b = rng.sample(KINDS, 2)
        halves = [(0, size // 2 - 4), (size // 2 + 2, size)]
        rng.shuffle(halves)
        shapes = [_shape(rng, size=size, taken=taken, x_range=h, kind=k, label="small")
                  for h, k in zip(halves, (a, b), strict=True)]
        answer = "left" if halves[0][0] == 0 else "right"
        return shapes, {"question": f"Is the {a} left or right of the {b}?", "answers": [answer]}
    third = rng.randrange(3)
    label = rng.choice(list(SIZES))
    side = _side(rng, size=size, label=label)
    # the shape's centre lies in its third: left edge in [third·S/3 − side/2, (third+1)·S/3 − side/2)
    x_range = (round(third * size / 3 - side / 2) + 1, round((third + 1) * size / 3 - side / 2) - 1)
    box = _place(rng, size=size, side=side, taken=taken, x_range=x_range)
    if box is None:
        return [None], {}
    shape = {"kind": rng.choice(KINDS), "color": rng.choice(list(COLOURS)), "size": label, "box": list(box)}
    where = "in the middle" if THIRDS[third] == "middle" else f"on the {THIRDS[third]}"
    return [shape], {"caption": [f"a {label} {shape['color']} {shape['kind']} {where}"]}


def draw(*, shapes: list[dict[str, Any]], size: int, background: tuple[int, int, int]) -> bytes:
    """PNG bytes of the scene (no anti-aliasing: every pixel is the background or a shape's colour)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), background)
    pen = ImageDraw.Draw(image)
    for s in shapes:
        x0, y0, x1, y1 = s["box"]
        colour = tuple(s["rgb"]) if "rgb" in s else COLOURS[s["color"]]  # a near-duplicate's jittered colour
        if s["kind"] == "circle":
            pen.ellipse((x0, y0, x1, y1), fill=colour)
        elif s["kind"] == "square":
            pen.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            pen.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _row(spec: ShapesSpec, task: str, i: int) -> tuple[list[dict[str, Any]], dict[str, Any], tuple[int, ...]] | None:
    """(shapes, fields, background) of row i of `task`, a pure function of (seed, task, i); None: no room."""
    rng = random.Random(f"{spec.seed}:{task}:{i}")
    for _ in range(20):
        shapes, fields = scene(task=task, rng=rng, size=spec.image_size, max_count=spec.max_count)
        if all(s is not None for s in shapes):
            return shapes, fields, rng.choice(BACKGROUNDS)
    return None


def _original(spec: ShapesSpec, task: str, i: int) -> int | None:
    """The row whose scene row i re-draws (never itself a re-drawing), or None for an original row."""
    near = spec.near_duplicates
    if near is None or i == 0 or random.Random(f"{spec.seed}:{task}:{i}:dup").random() >= near.fraction:
        return None
    j = random.Random(f"{spec.seed}:{task}:{i}:of").randrange(i)
    root = _original(spec, task, j)
    return j if root is None else root


def _answer_kept(task: str, old: list[int], new: list[int], size: int) -> bool:
    """Whether a moved box still gives the row's answer: position keeps its half, caption its third,
    relation its side of the centre line; inside the border by 2 px like every placed box."""
    if new[0] < 2 or new[1] < 2 or new[2] > size - 2 or new[3] > size - 2:
        return False
    if task == "position":
        return new[2] <= size // 2 - 2 if old[2] <= size // 2 - 2 else new[0] >= size // 2 + 2
    centre = (old[0] + old[2]) / 2, (new[0] + new[2]) / 2
    if task == "caption":
        return int(centre[0] * 3 // size) == int(centre[1] * 3 // size)
    if task == "relation":
        return (centre[0] < size / 2) == (centre[1] < size / 2)
    return True


def jitter(*, shapes: list[dict[str, Any]], background: tuple[int, ...], task: str, size: int,
           near: NearDuplicates, rng: random.Random) -> tuple[list[dict[str, Any]], tuple[int, ...]]:
    """The same scene re-drawn: each shape moved, resized within its size class and recoloured a little
    (a shape that finds no such place within 30 tries stays where it was); the answer is unchanged."""
    lo_hi = {label: (round(a * size), round(b * size)) for label, (a, b) in SIZES.items()}
    out: list[dict[str, Any]] = []
    for k, s in enumerate(shapes):
        others = [o["box"] for o in out] + [o["box"] for o in shapes[k + 1:]]
        box = list(s["box"])
        for _ in range(30):
            lo, hi = lo_hi[s["size"]]
            side = min(max(box[2] - box[0] + rng.randint(-near.side, near.side), lo), hi)
            x, y = box[0] + rng.randint(-near.shift, near.shift), box[1] + rng.randint(-near.shift, near.shift)
            cand = [x, y, x + side, y + side]
            clear = all(cand[2] + 2 < b[0] or b[2] + 2 < cand[0] or cand[3] + 2 < b[1] or b[3] + 2 < cand[1]
                        for b in others)
            if clear and _answer_kept(task, box, cand, size):
                box = cand
                break
        rgb = [min(max(c + rng.randint(-near.colour, near.colour), 0), 255) for c in COLOURS[s["color"]]]
        out.append({**s, "box": box, "rgb": rgb})
    half = near.colour // 2
    return out, tuple(min(max(c + rng.randint(-half, half), 0), 255) for c in background)


def read_shapes(spec: ShapesSpec) -> Iterator[Record | Reject]:
    for task, n in spec.rows_per_task().items():
        for i in range(n):
            of = _original(spec, task, i)
            made = _row(spec, task, i if of is None else of)
            if made is None:
                yield Reject(spec.name, f"{task}[{i}]", "no_room", f"could not place the shapes in "
                             f"{spec.image_size}px (lower max_count or raise image_size)", "load")
                continue
            shapes, fields, background = made
            context: dict[str, Any] = {"seed": spec.seed, "row": i}
            if of is not None and spec.near_duplicates is not None:
                shapes, background = jitter(shapes=shapes, background=background, task=task, size=spec.image_size,
                                            near=spec.near_duplicates, rng=random.Random(f"{spec.seed}:{task}:{i}:jitter"))
                context["near_duplicate_of"] = f"{task}[{of}]"
            png = draw(shapes=shapes, size=spec.image_size, background=background)
            context = {"scene": shapes, "background": list(background), **context}
            yield Record(source=spec.name, locator=f"{task}[{i}]", task=task, images=[ImageRef(data=png)],
                         fields=fields, context=context)
